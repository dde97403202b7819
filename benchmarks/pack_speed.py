"""Training throughput of a pack of K sCIFAR ablation models (``launcher.pack=K``) vs one model.

    python benchmarks/pack_speed.py --K 1 2 5 [--bf16] [--no-compile] [--eager-spectra] [--json out.json]

Each variant: K ``SequenceModel`` s of the sCIFAR ablation protocol (FACTS §2; inits cycling through
inv, lin, legs, real, rand) packed as one ``PackedModel`` (K = 1: the plain model), AdamW
(fused, capturable) over the members' groups, the whole step captured in a CUDA graph as ``ssm run``
does, ``compile_post`` on unless ``--no-compile``. Random data already on the device, batch 50 per
member. Reported per variant: step ms, samples/s per member and for the pack (K x batch / step),
peak memory. Variants alternate between rounds; median over rounds. A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

INITS = ("inv", "lin", "legs", "real", "rand")


def build(K: int, a, device) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    from ssm_cli.layers import SequenceModel, param_groups
    from ssm_cli.layers.packed import PackedModel

    members = []
    for k in range(K):
        torch.manual_seed(k)
        core = dict(init=INITS[k % len(INITS)], disc="zoh", bidirectional=True, n_ssm=1, lr=0.001)
        members.append(SequenceModel(3, 10, d_model=a.d_model, n_layers=a.n_layers, d_state=a.d_state, core="s4d",
                                     core_options=core, norm="layer", prenorm=False, dropout=0.1, tie_dropout=True,
                                     final_act="identity", pool="mean", compile_post=not a.no_compile and K == 1))
    model = (members[0] if K == 1 else PackedModel(members, compile_post=not a.no_compile)).to(device)
    if a.eager_spectra:  # keep the compiled tails, but the spectral products as complex torch ops
        for m in model.modules():
            if hasattr(m, "compile_spectra"):
                m.compile_spectra = False
    groups = [g for m in members for g in param_groups(m, lr=0.01, weight_decay=0.01)]
    for g in groups:
        g["lr"] = torch.tensor(float(g["lr"]), device=device)
    return model, torch.optim.AdamW(groups, lr=0.01, weight_decay=0.01, fused=True, capturable=True)


class Variant:
    def __init__(self, K: int, a, device):
        self.K, self.a = K, a
        self.model, self.opt = build(K, a, device)
        self.x = torch.randn(a.batch, a.L, 3, device=device)
        self.y = torch.randint(0, 10, (a.batch,), device=device)
        self.rates: list[float] = []
        t = time.perf_counter()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step()
        torch.cuda.synchronize()
        self.warmup_s = time.perf_counter() - t

    def _step(self):
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.a.bf16, cache_enabled=False):
            out = self.model(self.x)
            out = out if self.K > 1 else out[None]  # (K B O)
            loss = F.cross_entropy(out.float().flatten(0, 1), self.y.repeat(self.K))
        (loss * self.K).backward()  # = sum of the members' mean losses
        self.opt.step()

    def timed(self, steps: int) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            self.graph.replay()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / steps  # ms per step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--K", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--L", type=int, default=1024)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-layers", type=int, default=4)
    ap.add_argument("--d-state", type=int, default=64)
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast (kernels and FFTs stay float32)")
    ap.add_argument("--no-compile", action="store_true", help="no torch.compile of the block tails")
    ap.add_argument("--eager-spectra", action="store_true",
                    help="FFT convolution's spectral products as complex torch ops (compile_spectra off)")
    ap.add_argument("--compile-times", action="store_true",
                    help="print torch.compile's time per compiled function after the warm-ups")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("pack_speed.py needs a CUDA GPU")
    torch.set_float32_matmul_precision("high")
    device = torch.device("cuda")
    variants = []
    for K in a.K:
        torch.cuda.reset_peak_memory_stats()
        v = Variant(K, a, device)
        v.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        variants.append(v)
    if a.compile_times:
        from torch._dynamo.utils import compile_times

        print(compile_times(repr="str"))
    for r in range(a.repeats):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            v.rates.append(v.timed(a.steps))
    rows = []
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, batch {a.batch} per member, L {a.L}, "
          f"bf16 {a.bf16}, compile_post {not a.no_compile}")
    print("| K | step ms | samples/s per member | samples/s, pack | vs K=1 | peak MiB | warm-up s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    base = None
    for v in variants:
        ms = statistics.median(v.rates)
        total = v.K * a.batch / ms * 1e3
        base = base or (total if v.K == 1 else None)
        rows.append({"K": v.K, "step_ms": ms, "member_samples_per_s": a.batch / ms * 1e3, "pack_samples_per_s": total,
                     "peak_mb": v.peak_mb, "warmup_s": v.warmup_s, "rounds_ms": v.rates})
        ratio = f"{total / base:.2f}x" if base else "-"
        print(f"| {v.K} | {ms:.2f} | {a.batch / ms * 1e3:,.0f} | {total:,.0f} | {ratio} | {v.peak_mb:,.0f} | {v.warmup_s:.1f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "args": vars(a), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
