"""torch.compile's pool of compile worker processes, started early.

Inductor compiles its kernels in a pool of worker processes (one per core), which it starts at the
first compilation: each worker imports torch, seconds on a cold machine. ``start`` starts them
ahead of time (the runner calls it in a background thread while Lightning is imported), with
Inductor's own function (a private module): any failure leaves Inductor to start them itself.

The pool is not shut down early and Inductor's compiler is not imported in the background thread:
either made the process slower to exit or slowed Lightning's import in the main thread
(``benchmarks/README.md``).
"""
from __future__ import annotations


def start() -> bool:
    """Start the compile workers now (blocking: call it in a background thread); False if not."""
    try:
        from torch._inductor.async_compile import maybe_warm_pool

        maybe_warm_pool()
    except Exception:  # noqa: BLE001 - private API: without it the first compilation starts them
        return False
    return True
