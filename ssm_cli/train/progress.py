"""How far a run is, in a small file the grid's display polls: ``<run_dir>/progress.json``.

The same file serves a run in the grid's own process (``launcher=serial``) and one in a worker
subprocess (``launcher=local``): the display (``ssm_cli/cli/progress.py``) reads it from a thread,
so neither side waits for the other. Written atomically, at most once a second and after every
epoch: ``{"epoch": e, "epochs": E, "batch": b, "batches": B, "val": {"val_acc": 61.2}}``
(``epoch`` is the one in progress, 1-based; ``val`` the latest validation metric, if any).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytorch_lightning as pl

PROGRESS = "progress.json"
EVERY_SECONDS = 1.0


def read_progress(run_dir: Path) -> dict | None:
    """The run's progress, None if it has none (or the file is being replaced)."""
    try:
        return json.loads((Path(run_dir) / PROGRESS).read_text())
    except (OSError, ValueError):
        return None


def latest_val(history: list[dict]) -> dict:
    """The latest epoch's validation metric: ``{"val_acc": x}`` or ``{"val_rmse": x}``; {} before any."""
    for key in ("val_acc", "val_rmse"):
        if history and key in history[-1]:
            return {key: history[-1][key]}
    return {}


def write_progress(run_dir: Path, progress: dict) -> None:
    """Replace the file atomically (a reader never sees half of it); no fsync: it is only a display."""
    path = Path(run_dir) / PROGRESS
    tmp = path.with_name(f".{PROGRESS}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(progress))
    os.replace(tmp, path)


class ProgressFile(pl.Callback):
    """Writes each member's ``progress.json`` while it trains."""

    def __init__(self, run_dirs: list[Path]):
        self.run_dirs = [Path(d) for d in run_dirs]
        self._last = 0.0

    def _write(self, trainer, task, batch: int) -> None:
        self._last = time.monotonic()
        for k, d in enumerate(self.run_dirs):
            write_progress(d, {"epoch": task.current_epoch + 1, "epochs": int(trainer.max_epochs),
                                             "batch": batch, "batches": int(task.steps_per_epoch),
                                             "val": latest_val(task.histories[k])})

    def on_train_start(self, trainer, task) -> None:
        self._write(trainer, task, 0)

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx) -> None:
        if time.monotonic() - self._last >= EVERY_SECONDS:
            self._write(trainer, task, batch_idx + 1)

    def on_train_epoch_end(self, trainer, task) -> None:
        self._write(trainer, task, int(task.steps_per_epoch))
