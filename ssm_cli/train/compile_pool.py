"""torch.compile's pool of compile worker processes, started early.

Inductor compiles its kernels in a pool of worker processes (one per core), which it starts at the
first compilation: each worker imports torch, seconds on a cold machine. ``start`` starts them
ahead of time (the runner calls it in a background thread while Lightning is imported), with
Inductor's own function (a private module): any failure leaves Inductor to start them itself.

Tried and dropped (H100, init grid as a pack): shutting the pool down in the background after the
first evaluation, and importing Inductor's compiler in that background thread too. The process then
took 9-11 s to exit instead of 3 s, and the import slowed Lightning's in the main thread.
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
