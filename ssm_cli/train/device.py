"""Where a run computes and the process-wide torch settings it runs under: decided here only.

- ``uses_cuda(cfg)``: the run trains on the GPU (``trainer.accelerator`` gpu/cuda, or auto with
  CUDA available); ``resolve_device`` is its device, ``compiles`` whether ``trainer.compile``
  (auto: on the GPU) is on. The runner, the grid's start-up and the Lightning module ask these;
  ``synchronize`` waits for the device a run computes on (its timings).
- ``torch_flags(cfg)``: the global torch settings a run trains under (float32 matmul precision,
  Inductor's deterministic mode).
- ``start_cuda_early(cfg)``: CUDA and torch.compile's worker pool started in a background thread
  while Lightning is imported (``grid.start_early``), only when the run will use them.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch
from omegaconf import DictConfig

from ssm_cli.trace import trace


def uses_cuda(cfg: DictConfig) -> bool:
    """Whether the run trains on the GPU."""
    acc = cfg.trainer.accelerator
    return acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available())


def resolve_device(cfg: DictConfig) -> torch.device:
    return torch.device("cuda") if uses_cuda(cfg) else torch.device("cpu")


def compiles(cfg: DictConfig) -> bool:
    """``trainer.compile``: true, false, or auto (compile on the GPU)."""
    c = cfg.trainer.compile
    return uses_cuda(cfg) if c == "auto" else bool(c)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timings of GPU work); nothing on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def deterministic_compilation(on: bool) -> bool | None:
    """Set Inductor's deterministic mode (``torch._inductor.config.deterministic``); returns the
    previous setting, None if this torch has no such setting.

    By default Inductor times several configurations of a reduction kernel and keeps the fastest;
    they sum in different orders, so two runs of one config can differ in the last bits, and after
    thousands of steps in the second decimal of an accuracy. Deterministic mode picks a
    configuration without timing. ``trainer.deterministic=true`` sets it while the run trains,
    beside Lightning's ``deterministic`` (torch's deterministic algorithms)."""
    import torch._inductor.config as inductor_config

    if not hasattr(inductor_config, "deterministic"):
        return None
    previous = bool(inductor_config.deterministic)
    inductor_config.deterministic = bool(on)
    return previous


@contextmanager
def torch_flags(cfg: DictConfig):
    """The global torch settings of a run, while it trains: ``trainer.matmul_precision`` (kept
    afterwards) and, with ``trainer.deterministic``, Inductor's deterministic mode (restored)."""
    before = deterministic_compilation(True) if cfg.trainer.deterministic else None
    try:
        torch.set_float32_matmul_precision(cfg.trainer.matmul_precision)
        yield
    finally:
        if before is not None:
            deterministic_compilation(before)


def start_cuda_early(cfg: DictConfig) -> None:
    """Initialise CUDA in a background thread when the run will train on it, then start
    torch.compile's worker processes if it will compile. Changes nothing the run computes."""
    if uses_cuda(cfg):
        threading.Thread(target=_init_cuda, args=(compiles(cfg),), name="ssm-cuda-init", daemon=True).start()


def _init_cuda(compile_workers: bool) -> None:
    try:
        torch.cuda.init()  # the run's first CUDA call would do it (environment(), then the model)
    except Exception:  # noqa: BLE001 - the run's own first CUDA call reports the problem
        return
    trace("CUDA initialised in the background", sync=False)
    if compile_workers:
        from ssm_cli.train import compile_pool

        if not compile_pool.start():
            return
        trace("compile workers started in the background", sync=False)
