"""The progress display of ``ssm run``: the grid's bar, and below it one bar per active run with
its epoch and latest validation metric.

Runs report through their ``progress.json`` (``ssm_cli/train/progress.py``), in this process or
in a ``launcher=local`` worker alike; a thread here polls the files of the runs still to finish
twice a second. Lightning's own bar is off under this display (``grid.run_serial`` passes
``progress=False``; workers always do), so the lines never overwrite each other.
``trainer.progress=false`` keeps only the grid's bar.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ssm_cli.train.progress import PROGRESS, read_progress

POLL_SECONDS = 0.5


def run_line(progress: dict) -> str:
    """``epoch 2/10 · val_acc 61.20`` from a run's progress."""
    text = f"epoch {progress.get('epoch')}/{progress.get('epochs')}"
    for key, value in (progress.get("val") or {}).items():
        text += f" · {key} {value:.2f}"
    return text


class GridDisplay:
    """``with GridDisplay(console, runs, work) as d: ... d.done(run, line)``: ``runs`` the grid, ``work``
    those of its runs that will run (the others count as done); ``per_run``: one bar per active run."""

    def __init__(self, console: Console, runs: list, work: list, per_run: bool = True):
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), console=console, transient=False)
        self.console = self.progress.console
        self.total, self.completed = len(runs), len(runs) - len(work)
        self.grid = self.progress.add_task("[bold]grid", total=self.total, completed=self.completed, info=self._count())
        self.waiting = {r.run_dir: r for r in work}  # not finished yet
        self.tasks: dict[Path, int] = {}  # run directory -> its bar, while it runs
        self.per_run = per_run
        self.started = time.time()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._poll, name="ssm-progress", daemon=True)

    def _count(self) -> str:
        return f"{self.completed}/{self.total}"

    def __enter__(self) -> "GridDisplay":
        self.progress.__enter__()
        if self.per_run:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.progress.__exit__(*exc)

    def done(self, run, line: str) -> None:
        """A run finished (whatever its status): its bar goes, its line is printed, the grid advances."""
        with self._lock:
            self.waiting.pop(run.run_dir, None)
            task = self.tasks.pop(run.run_dir, None)
            if task is not None:
                self.progress.remove_task(task)
            self.completed += 1
            self.progress.update(self.grid, completed=self.completed, info=self._count())
        self.console.print(line, highlight=False)

    def poll_once(self) -> None:
        """Update the bars of the runs whose progress file was written since the grid started."""
        with self._lock:
            for run_dir, run in list(self.waiting.items()):
                try:
                    if (run_dir / PROGRESS).stat().st_mtime < self.started - 1.0:  # left by an earlier grid
                        continue
                except OSError:
                    continue
                p = read_progress(run_dir)
                if not p:
                    continue
                batches = max(int(p.get("batches") or 1), 1)
                total = int(p.get("epochs") or 1) * batches
                completed = (int(p.get("epoch") or 1) - 1) * batches + int(p.get("batch") or 0)
                if run_dir not in self.tasks:
                    self.tasks[run_dir] = self.progress.add_task(f"  {run.variant} seed {run.seed}", total=total, info="")
                self.progress.update(self.tasks[run_dir], total=total, completed=completed, info=run_line(p))

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.poll_once()
