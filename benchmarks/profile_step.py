"""Profile training steps of the sCIFAR ablation model: where does a step's time go?

    python benchmarks/profile_step.py [--steps 20] [--batch 50] [--L 1024] [--bf16] [--kernels] [--json out.json]

Prints the top operators by device (or CPU) time from torch.profiler, and the plain step time
measured without the profiler. A diagnostic, not a timed test.
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def build(L: int, device: str, fused: bool = False, compiled: bool = False):
    from ssm_cli.layers import SequenceModel, param_groups

    core = dict(init="inv", disc="zoh", bidirectional=True, n_ssm=1, lr=0.001)
    model = SequenceModel(3, 10, d_model=128, n_layers=4, d_state=64, core="s4d", core_options=core,
                          norm="layer", prenorm=False, dropout=0.1, tie_dropout=True, final_act="identity",
                          pool="mean", compiled=compiled).to(device)
    groups = param_groups(model, lr=0.01, weight_decay=0.01)
    if fused:  # tensor learning rates: a captured graph reads them, so schedules still apply
        for g in groups:
            g["lr"] = torch.tensor(float(g.get("lr", 0.01)), device=device)
    opt = torch.optim.AdamW(groups, lr=0.01, fused=fused, capturable=fused) if fused else \
        torch.optim.AdamW(groups, lr=0.01)
    return model, opt


def _short(name: str) -> str:
    """A kernel's name without template noise: ATen elementwise kernels by the functor they run."""
    import re

    if name.startswith("void at::native::"):
        what = re.findall(r"(\w*(?:Functor|copy_kernel|fill_kernel|kernel_cuda|_kernel_impl)\w*)", name)
        return f"{name[17:name.find('<')]} [{', '.join(dict.fromkeys(what[:4]))}]"
    return name[:90]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--L", type=int, default=1024)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--rows", type=int, default=30, help="operators listed")
    ap.add_argument("--graph", action="store_true", help="capture the whole step in a CUDA graph")
    ap.add_argument("--fused", action="store_true", help="fused AdamW")
    ap.add_argument("--compiled", action="store_true", help="torch.compile each block's real-valued tail")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--kernels", action="store_true",
                    help="list device kernels (self time per step, calls per step) instead of the operator table")
    a = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, opt = build(a.L, device, fused=a.fused or a.graph, compiled=a.compiled)
    x = torch.randn(a.batch, a.L, 3, device=device)
    y = torch.randint(0, 10, (a.batch,), device=device)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=a.bf16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if a.graph:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=a.bf16):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            loss.backward()
            opt.step()
        eager = step
        step = graph.replay
    for _ in range(5):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    dt = (time.perf_counter() - t) / a.steps
    print(f"{device}: {dt * 1e3:.2f} ms/step, {a.batch / dt:.0f} samples/s (batch {a.batch}, L {a.L}, bf16 {a.bf16})")
    if a.no_profile:
        return
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(5):
            step()
        sync()
    key = "cuda_time_total" if device == "cuda" else "cpu_time_total"
    if a.kernels and device == "cuda":
        rows = [e for e in prof.key_averages() if e.self_device_time_total > 0 and e.self_cpu_time_total == 0]
        rows.sort(key=lambda e: -e.self_device_time_total)
        total = sum(e.self_device_time_total for e in rows) / 5
        print(f"device time per step: {total / 1e3:.2f} ms")
        print("| kernel | us/step | calls/step | share |")
        print("|---|---:|---:|---:|")
        for e in rows[:a.rows]:
            t = e.self_device_time_total / 5
            print(f"| {_short(e.key)} | {t:.0f} | {e.count / 5:g} | {100 * t / total:.1f}% |")
    else:
        print(prof.key_averages().table(sort_by=key, row_limit=a.rows, max_name_column_width=90))
    if a.json:
        json.dump({"device": device, "ms_per_step": dt * 1e3, "samples_per_s": a.batch / dt}, open(a.json, "w"))


if __name__ == "__main__":
    main()
