"""Kernel benchmark: time and peak memory of the SSM convolution kernel (not a timed test).

    .venv/bin/python benchmarks/kernel_bench.py                       # default grid, CPU (+ CUDA if present)
    .venv/bin/python benchmarks/kernel_bench.py --H 256 --N 64 --L 16384 --core s4d --device cpu

Each configuration runs in a fresh subprocess so that CPU peak memory (ru_maxrss growth over the
state before building the core, measured in a second process with glibc's mmap threshold fixed at
128 KiB so that freed tensors leave the RSS) belongs to that configuration alone; on CUDA the figure is
torch.cuda.max_memory_allocated minus the memory held before the call. "fwd" is core.kernel(L);
"fwd+bwd" also back-propagates sum(K^2) to the parameters. "naive" is the one-shot Vandermonde
that materialises the whole (H, N/2, L) complex table, for comparison.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _naive_kernel(core, L):
    import torch
    log_Abar, W = core._discrete(1.0, L)  # (H M), (C H M)
    V = torch.exp(log_Abar[:, :, None] * torch.arange(L, device=W.device))  # (H M L)
    return torch.einsum("chm,hml->chl", W, V).real  # (C H L)


def run_one(core_name: str, H: int, N: int, L: int, device: str, backward: bool, repeats: int, naive: bool) -> dict:
    import torch
    sys.path.insert(0, ".")
    from ssm_cli.layers import build

    torch.manual_seed(0)
    core = build(core_name, H, N, seed=0).to(device)
    fn = (lambda: _naive_kernel(core, L)) if naive else (lambda: core.kernel(L))

    def once():
        core.zero_grad(set_to_none=True)
        if backward:
            fn().square().sum().backward()
        else:
            with torch.no_grad():
                fn()
        if device == "cuda":
            torch.cuda.synchronize()

    once()  # warm-up (also the CPU peak: the first call allocates the most)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = None
    out_mb = core.channels * H * L * 4 / 2**20
    impl = "naive" if naive else ("cauchy" if core_name == "s4" else "blocked")
    return {"core": core_name, "impl": impl, "H": H, "N": N, "L": L,
            "device": device, "pass": "fwd+bwd" if backward else "fwd", "ms": 1000 * min(times),
            "peak_mb": peak, "rss0_kb": rss0, "output_mb": out_mb}


def _child(args) -> dict:
    """Two fresh processes: one timed with the default allocator, one measuring memory."""
    cmd = [sys.executable, __file__, "--child", "--core", args.core, "--H", str(args.H), "--N", str(args.N),
           "--L", str(args.L), "--device", args.device, "--repeats", str(args.repeats)]
    cmd += ["--backward"] if args.backward else []
    cmd += ["--naive"] if args.naive else []
    # A fixed mmap threshold makes glibc return large blocks on free, so the peak RSS measures live
    # tensors rather than heap fragmentation (it also slows allocation: not used for the timing).
    out = []
    for env in (dict(os.environ), {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}):
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode:
            err = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"rc {res.returncode}"
            return {"core": args.core, "impl": "naive" if args.naive else "-", "H": args.H, "N": args.N,
                    "L": args.L, "device": args.device, "pass": "fwd+bwd" if args.backward else "fwd",
                    "error": err}
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    timed, measured = out
    if args.device == "cpu":
        timed["peak_mb"] = measured["peak_mb"]
    return timed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--core", default=None, help="s4d | dss | s4 (default: s4d and s4)")
    p.add_argument("--H", type=int, default=256)
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--L", type=int, default=None, help="default: 1024, 4096, 16384")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cpu, and cuda if available)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--backward", action="store_true")
    p.add_argument("--naive", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = p.parse_args()
    if args.child:
        import torch
        torch.set_num_threads(torch.get_num_threads())
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        r = run_one(args.core, args.H, args.N, args.L, args.device, args.backward, args.repeats, args.naive)
        if r["peak_mb"] is None:  # CPU: growth of the peak RSS over the state after imports and build
            r["peak_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        del r["rss0_kb"]
        print(json.dumps(r))
        return
    import torch
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cores = [args.core] if args.core else ["s4d", "s4"]
    Ls = [args.L] if args.L else [1024, 4096, 16384]
    rows = []
    for device in devices:
        for core in cores:
            for L in Ls:
                for backward in (False, True):
                    for naive in ((False, True) if core != "s4" and (args.naive or L <= 4096) else (False,)):
                        ns = argparse.Namespace(**{**vars(args), "device": device, "core": core, "L": L,
                                                   "backward": backward, "naive": naive})
                        r = _child(ns)
                        rows.append(r)
                        if args.json:
                            print(json.dumps(r), flush=True)
                        else:
                            if "error" in r:
                                print(f"{device:5} {core:4} {r['impl']:8} H={args.H} N={args.N} L={L:6} "
                                      f"{r['pass']:8} ERROR {r['error']}", flush=True)
                            else:
                                print(f"{device:5} {core:4} {r['impl']:8} H={args.H} N={args.N} L={L:6} "
                                      f"{r['pass']:8} {r['ms']:9.1f} ms  peak {r['peak_mb']:8.1f} MB  "
                                      f"(output {r['output_mb']:.0f} MB)", flush=True)


if __name__ == "__main__":
    main()
