"""torch.compile's pool of compile worker processes: started early, released once compiled.

Inductor compiles its kernels in a pool of worker processes (one per core), which it starts at the
first compilation: each worker imports torch, seconds on a cold machine. ``start`` starts them
ahead of time (the runner calls it in a background thread while Lightning is imported). A run
compiles everything in its first training steps and first evaluation; the pool then idles until
the process exits, when its shutdown takes seconds. ``release`` shuts it down in the background
after the first evaluation, while training goes on. Were anything compiled later (a new shape), the
pool would be started again. Both use Inductor's own functions (a private module): any failure
leaves Inductor to do what it does without them.
"""
from __future__ import annotations

import threading

from ssm_cli.trace import trace

_released = False


def start() -> bool:
    """Start the compile workers now (blocking: call it in a background thread); False if not."""
    try:
        from torch._inductor.async_compile import maybe_warm_pool

        maybe_warm_pool()
        import torch._inductor.compile_fx  # noqa: F401 - what torch.compile() imports when a model is built
    except Exception:  # noqa: BLE001 - private API: without it the first compilation starts them
        return False
    return True


def release() -> None:
    """Shut the compile workers down in a background thread, once per process."""
    global _released
    if _released:
        return
    _released = True

    def shutdown() -> None:
        try:
            from torch._inductor.async_compile import shutdown_compile_workers

            shutdown_compile_workers()
        except Exception:  # noqa: BLE001 - then they are shut down at exit, as without this
            return
        trace("compile workers shut down in the background", sync=False)

    threading.Thread(target=shutdown, name="ssm-compile-pool", daemon=True).start()
