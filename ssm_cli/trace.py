"""``SSM_TRACE=1``: timestamps of a run's start-up phases on stderr (imports, setup, compilation,
capture, evaluations). Off otherwise: ``trace`` then does nothing."""
from __future__ import annotations

import os
import sys
import time

ENABLED = bool(os.environ.get("SSM_TRACE"))


def trace(what: str) -> None:
    """Print seconds since ssm_cli was imported (the process start, near enough), after a GPU sync."""
    if not ENABLED:
        return
    import torch

    from ssm_cli import STARTED

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    print(f"[trace {time.perf_counter() - STARTED:8.2f} s] {what}", file=sys.stderr, flush=True)
