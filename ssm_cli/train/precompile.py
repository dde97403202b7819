"""torch.compile's kernels for a run, compiled ahead in a second process while Lightning is imported.

On a GPU a run compiles its models' compiled parts (``compile_post``: block tails, the FFT
convolution's padding and spectral products) at its first training step and first evaluation:
Dynamo traces, Inductor generates and Triton compiles kernels, 10-17 s for the sCIFAR pack on an
H100. Until then the run spends as long again importing Lightning, one core busy. ``start`` launches
``python -m ssm_cli.train.precompile`` on the run's configs at once: that process builds the same
models and runs one training forward/backward and one evaluation forward on a few real items of
the dataset, under the run's precision, so the kernels land in Inductor's and Triton's on-disk
caches. The run ``wait`` s for it before its first step; its own compilation then finds every
kernel in those caches (a cache hit gives the kernel a compilation would, so nothing the run
computes changes). Whatever the second process misses or gets wrong costs only time: the run
compiles it as it would have.

Skipped when the run does not compile on CUDA, trains deterministically, has
``trainer.precompile=false``, or when its data still needs a download or a cache build (the second
process never takes such a step).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from omegaconf import DictConfig, OmegaConf

from ssm_cli.trace import trace

WAIT_LIMIT_S = 180.0  # a second process still compiling after this long is stopped

_CHILD: dict = {}


def wanted(cfg: DictConfig, cuda: bool) -> bool:
    """Whether a run of ``cfg`` compiles its models on CUDA (as ``SequenceTask`` decides)."""
    tc = cfg.trainer
    return cuda and bool(tc.get("precompile", True)) and tc.compile in (True, "auto") and not tc.deterministic


def start(cfgs: list[DictConfig]) -> bool:
    """Launch the second process on a run's configs (a pack's members); False if it did not start."""
    if _CHILD:
        return False
    fd, path = tempfile.mkstemp(prefix="ssm-precompile-", suffix=".yaml")
    os.close(fd)
    OmegaConf.save(OmegaConf.create({"members": list(cfgs)}), path, resolve=True)
    log = tempfile.TemporaryFile(mode="w+")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "ssm_cli.train.precompile", path],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError:
        os.unlink(path)
        log.close()
        return False
    _CHILD.update(proc=proc, log=log, started=time.perf_counter())
    trace("precompiling in a second process", sync=False)
    return True


def wait(limit_s: float = WAIT_LIMIT_S) -> None:
    """Wait for the second process, if one runs (once: later calls return at once)."""
    if "proc" not in _CHILD:
        return
    proc, log = _CHILD["proc"], _CHILD["log"]
    t = time.perf_counter()
    try:
        code = proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = "stopped"
    log.seek(0)
    tail = log.read().strip().splitlines()[-1:]
    log.close()
    _CHILD.clear()
    _CHILD["done"] = True  # one second process per run process
    outcome = "done" if code == 0 else f"failed ({code}: {tail[0] if tail else 'no output'})"
    trace(f"precompile {outcome}; waited {time.perf_counter() - t:.2f} s for it")


def cache_report() -> str:
    """This process's lookups in Inductor's compiled-graph cache so far (for ``SSM_TRACE``)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return "compile cache: unknown"
    c = counters["inductor"]
    return f"compile cache: {c['fxgraph_cache_hit']} hit(s), {c['fxgraph_cache_miss']} miss(es)"


def run(cfgs: list[DictConfig], device: str = "cuda") -> str:
    """In the second process: compile what a run of ``cfgs`` compiles. Returns what it did."""
    import torch

    from ssm_cli.data.cache import NotPrefetchable, prefetching
    from ssm_cli.data.registry import load_dataset
    from ssm_cli.train.model import build_models

    cfg = cfgs[0]
    tc = cfg.trainer
    # the settings of the run that enter the kernels (and the caches' keys)
    torch.set_float32_matmul_precision(tc.matmul_precision)
    try:
        with prefetching():  # opens cached arrays; never downloads nor builds a cache
            data = load_dataset(cfg.dataset.name, cfg.data_dir, **OmegaConf.to_container(cfg.dataset.options, resolve=True))
    except NotPrefetchable as e:
        return f"skipped: the data needs {e} first"
    device = torch.device(device)
    model = build_models([c.model for c in cfgs], data.spec, compile_post=True, seed=int(cfg.run.seed)).to(device)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(tc.precision))

    def batch(dataset, n: int) -> torch.Tensor:
        n = min(n, len(dataset))
        return torch.stack([torch.as_tensor(dataset[i][0]) for i in range(n)]).to(device)

    # a training step's forward and backward, autocast as the CUDA-graph step runs it
    model.train()
    with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None, cache_enabled=False):
        out = model(batch(data.train, int(tc.batch_size)))
    out.float().sum().backward()
    # an evaluation batch as Lightning's validation loop runs it: eval mode, inference mode, autocast
    model.eval()
    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        model(batch(data.val, int(tc.eval_batch_size or tc.batch_size)))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return f"compiled ({cache_report()})"


def main(argv: list[str]) -> int:
    path = argv[0]
    try:
        cfgs = list(OmegaConf.load(path).members)
    finally:
        os.unlink(path)
    t = time.perf_counter()
    print(f"{run(cfgs)} in {time.perf_counter() - t:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
