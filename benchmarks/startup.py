"""What a run's start-up costs, phase by phase, each phase alone in a fresh process.

    python benchmarks/startup.py [--repeats 3] [--drop-caches] [--importtime out.txt]

The phases ``ssm run`` goes through before its first training step that do not depend on the
project's code: ``import torch``, Hydra + Typer, Lightning (which imports torchmetrics, torchvision
and torch._dynamo), Inductor's compiler, CUDA initialisation and the start of torch.compile's worker
pool. Each repeat is one child process that runs them in that order, one after the other (no
background threads) and prints the time each took. ``--drop-caches`` (root, Linux) empties the page
cache before each child, as on a freshly started machine whose files have never been read (the
closest a used machine comes to one). ``--importtime`` writes the slowest imports of the first
child (python -X importtime, cumulative). A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = r"""
import time
t0 = last = time.perf_counter()
def mark(name):
    global last
    now = time.perf_counter()
    print(f"{name}\t{now - last:.3f}", flush=True)
    last = now
import torch; mark("import torch")
import hydra, omegaconf, typer; mark("import hydra, omegaconf, typer")
import pytorch_lightning; mark("import pytorch_lightning")
import torch._inductor.compile_fx; mark("import inductor compile_fx")
torch.cuda.init() if torch.cuda.is_available() else None; mark("torch.cuda.init")
from torch._inductor.async_compile import maybe_warm_pool; maybe_warm_pool(); mark("compile worker pool")
print(f"total\t{time.perf_counter() - t0:.3f}", flush=True)
"""


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def child(importtime: str | None) -> dict[str, float]:
    args = [sys.executable] + (["-X", "importtime"] if importtime else []) + ["-c", CHILD]
    p = subprocess.run(args, capture_output=True, text=True, check=True)
    if importtime:
        rows = [line.split("|") for line in p.stderr.splitlines() if line.startswith("import time:")]
        rows = [(int(r[1]), r[2].rstrip()) for r in rows[1:] if r[1].strip().isdigit()]
        with open(importtime, "w") as f:
            for us, name in sorted(rows, reverse=True)[:80]:
                f.write(f"{us / 1e6:8.3f} s {name}\n")
    return {k: float(v) for k, v in (line.split("\t") for line in p.stdout.splitlines())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--drop-caches", action="store_true", help="empty the page cache before each child (root)")
    ap.add_argument("--importtime", default=None, help="file for the first child's slowest imports")
    a = ap.parse_args(argv)
    runs = []
    for r in range(a.repeats):
        if a.drop_caches:
            drop_caches()
        runs.append(child(a.importtime if r == 0 else None))
    names = list(runs[0])
    print(f"page cache dropped before each: {a.drop_caches}; seconds per phase, one child per column")
    print("| phase | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |")
    print("|---|" + "---:|" * len(runs))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{r[name]:.2f}" for r in runs) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
