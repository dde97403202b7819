"""SIGINT and SIGTERM as an exception: a run stops where it is, records that it was interrupted
(resumable, never failed) and the grid says what is left.

Without this, Lightning turns Ctrl-C during training into ``exit(1)``, Ctrl-C elsewhere is a
KeyboardInterrupt that ``except Exception`` does not see but that bypasses the grid's summary, and
SIGTERM ends the process at once with nothing written.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from ssm_cli.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """The shell's code for a process ended by ``signum`` (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


@contextmanager
def signals_raise(signals: tuple = SIGNALS) -> Iterator[None]:
    """Within the block, the first of ``signals`` (SIGINT, SIGTERM) raises ``Interrupted`` in the main thread;
    later ones are ignored, so that writing the records of where the runs stopped is not cut
    short (kill -9 still ends the process, and leaves the runs resumable too). Nothing is changed
    off the main thread (Python delivers signals there only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
