"""``SSM_TRACE=1``: timestamps of a run's start-up phases on stderr (imports, configs, data, setup,
compilation, capture, evaluations). Off otherwise: ``trace`` then does nothing.

Times are seconds since ``ssm_cli`` was imported; the first line says how long the process ran
before that (the interpreter's own start-up), where the system tells (Linux ``/proc``)."""
from __future__ import annotations

import os
import sys
import threading
import time

ENABLED = bool(os.environ.get("SSM_TRACE"))
_LOCK = threading.Lock()  # lines of background threads (data, CUDA) never interleave
_first = True


def process_age() -> float | None:
    """Seconds since this process started (Linux: ``/proc``; 10 ms resolution), else None."""
    try:
        with open("/proc/self/stat") as f:
            after_name = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - int(after_name[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time in ticks
    except (OSError, ValueError, IndexError):
        return None


def trace(what: str, sync: bool = True) -> None:
    """Print seconds since ssm_cli was imported, after a GPU sync (``sync``; background threads
    pass False: they must never synchronise while the main thread captures a CUDA graph)."""
    global _first
    if not ENABLED:
        return
    import torch

    from ssm_cli import STARTED

    if sync and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    now = time.perf_counter()
    with _LOCK:
        if _first:
            _first = False
            age = process_age()
            if age is not None:
                before = max(0.0, age - (now - STARTED))
                print(f"[trace {0.0:8.2f} s] ssm_cli imported, {before:.2f} s after the process started",
                      file=sys.stderr, flush=True)
        print(f"[trace {now - STARTED:8.2f} s] {what}", file=sys.stderr, flush=True)
