"""Training throughput of a pack of K sCIFAR ablation models (``launcher.pack=K``) vs one model.

    python benchmarks/pack_speed.py --K 1 2 5 [--bf16] [--no-compile] [--c2r torch cufft]
                                    [--residual fused autograd]
                                    [--kernels] [--json out.json]

Each variant: K ``SequenceModel`` s of the sCIFAR ablation protocol (docs/papers.md §2; inits cycling through
inv, lin, legs, real, rand) packed as one ``PackedModel`` (K = 1: the plain model), AdamW
(fused, capturable) over the members' groups, the whole step captured in a CUDA graph as ``ssm run``
does, ``compiled`` on unless ``--no-compile``. Random data already on the device, batch 50 per
member. Reported per variant: step ms, samples/s per member and for the pack (K x batch / step),
peak memory. Variants alternate between rounds; median over rounds. ``--c2r torch cufft``: each K
twice, the FFT convolution's inverse FFTs by torch's ``irfft`` (which copies its input first) and by
cuFFT in place (``ssm_cli.layers.cufft``, what ``ssm run`` uses). ``--residual fused autograd``: the
block input's two gradients summed in the convolution's backward (what ``ssm run`` does) or by
autograd (reading the convolution's strided input gradient). ``--kernels``: per variant, the
device kernels of 5 replayed steps from torch.profiler (count and summed time per step, against
the step's wall time: the difference is the GPU's idle gaps between kernels). A benchmark, not a test.
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
                                     final_act="identity", pool="mean", compiled=not a.no_compile and K == 1))
    model = (members[0] if K == 1 else PackedModel(members, compiled=not a.no_compile)).to(device)
    groups = [g for m in members for g in param_groups(m, lr=0.01, weight_decay=0.01)]
    for g in groups:
        g["lr"] = torch.tensor(float(g["lr"]), device=device)
    return model, torch.optim.AdamW(groups, lr=0.01, weight_decay=0.01, fused=True, capturable=True)


class Variant:
    def __init__(self, K: int, a, device, c2r: str = "cufft", residual: str = "fused"):
        from ssm_cli.layers import backbone, cufft

        self.K, self.a, self.c2r, self.residual = K, a, c2r, residual
        cufft.ENABLED = c2r == "cufft"  # the capture records the chosen inverse FFT
        self.model, self.opt = build(K, a, device)
        backbone.FUSE_RESIDUAL = residual == "fused"  # read at each forward, so it holds for the capture
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
        cufft.ENABLED = True

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


def kernel_profile(v: Variant, steps: int = 5) -> dict:
    """torch.profiler over ``steps`` graph replays: kernels per step, their summed time, the top ones."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        wall = v.timed(steps)
    rows = [e for e in prof.key_averages() if e.self_device_time_total > 0]
    device_ms = sum(e.self_device_time_total for e in rows) / steps / 1e3
    top = sorted(((e.key[:100], e.self_device_time_total / steps, e.count / steps) for e in rows), key=lambda r: -r[1])
    return {"kernels_per_step": sum(e.count for e in rows) / steps, "device_ms_per_step": device_ms,
            "wall_ms_per_step": wall, "idle_ms_per_step": wall - device_ms, "top": top[:30]}


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
    ap.add_argument("--compile-times", action="store_true",
                    help="print torch.compile's time per compiled function after the warm-ups")
    ap.add_argument("--c2r", nargs="+", choices=("torch", "cufft"), default=["cufft"],
                    help="inverse FFTs: torch's irfft (input copied) or cuFFT in place; several: one variant each")
    ap.add_argument("--residual", nargs="+", choices=("fused", "autograd"), default=["fused"],
                    help="residual gradient: summed in the conv's backward (fused) or by autograd; several: one variant each")
    ap.add_argument("--kernels", action="store_true", help="profile 5 replayed steps per variant: kernels, gaps")
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
        for c2r in a.c2r:
            for residual in a.residual:
                torch.cuda.reset_peak_memory_stats()
                v = Variant(K, a, device, c2r, residual)
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
          f"bf16 {a.bf16}, compiled {not a.no_compile}")
    print("| K | inverse FFT | residual grad | step ms | samples/s per member | samples/s, pack | vs K=1 | peak MiB | warm-up s |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    base = None
    for v in variants:
        ms = statistics.median(v.rates)
        total = v.K * a.batch / ms * 1e3
        base = base or (total if v.K == 1 else None)
        rows.append({"K": v.K, "c2r": v.c2r, "residual": v.residual, "step_ms": ms, "member_samples_per_s": a.batch / ms * 1e3, "pack_samples_per_s": total,
                     "peak_mb": v.peak_mb, "warmup_s": v.warmup_s, "rounds_ms": v.rates})
        ratio = f"{total / base:.2f}x" if base else "-"
        print(f"| {v.K} | {v.c2r} | {v.residual} | {ms:.2f} | {a.batch / ms * 1e3:,.0f} | {total:,.0f} | {ratio} | {v.peak_mb:,.0f} | {v.warmup_s:.1f} |")
    if a.kernels:
        for v, row in zip(variants, rows):
            row["kernels"] = kernel_profile(v)
            k = row["kernels"]
            print(f"K={v.K} {v.c2r} {v.residual}: {k['kernels_per_step']:.0f} kernels per step, {k['device_ms_per_step']:.2f} ms "
                  f"of kernel time in a {k['wall_ms_per_step']:.2f} ms step (idle {k['idle_ms_per_step']:.2f} ms)")
            for name, us, calls in k["top"][:12]:
                print(f"    {us:7.0f} us {calls:5.0f}x  {name}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "args": vars(a), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
