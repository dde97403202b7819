"""The run record (``record.json``): what a run is, how it went, and what it measured.

Written atomically (temp file + rename) after every epoch, so a reader, or a run resumed after
``kill -9``, never sees half a record. Statuses: ``pending`` (config written, not started),
``running``, ``completed``, ``failed``, ``diverged``.
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

RECORD = "record.json"
CONFIG = "config.yaml"
CHECKPOINT = "last.ckpt"
STATUSES = ("pending", "running", "completed", "failed", "diverged")


def write_json_atomic(path: Path, data: dict) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def best_epoch(history: list[dict], task: str) -> dict | None:
    """The epoch with the best validation metric (max accuracy / min RMSE); ties: the earliest."""
    key, sign = ("val_acc", 1.0) if task == "classification" else ("val_rmse", -1.0)
    scored = [m for m in history if m.get(key) is not None]
    return max(scored, key=lambda m: (sign * m[key], -m["epoch"])) if scored else None


def read_record(run_dir: Path) -> dict | None:
    """The record of a run, or None if it has none (or an unreadable one)."""
    try:
        return json.loads((Path(run_dir) / RECORD).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@contextmanager
def run_lock(run_dir: Path) -> Iterator[bool]:
    """Hold an exclusive lock on a run directory; yields False if another process holds it.

    The OS releases the lock when its process dies (also on kill -9), so a stale lock never
    blocks a rerun.
    """
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(run_dir) / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def git_commit() -> str | None:
    """The commit of the code that runs: ``$SSM_GIT_COMMIT`` if set (a copy of the tree without
    its .git, e.g. on a remote GPU machine), else ``git rev-parse HEAD``; None if neither works."""
    env = os.environ.get("SSM_GIT_COMMIT")
    if env:
        return env
    try:
        out = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def environment() -> dict:
    """Versions and device: what a reader needs to trust (or question) the numbers."""
    import torch

    import ssm_cli

    try:
        import pytorch_lightning as pl
        lightning = pl.__version__
    except ImportError:  # pragma: no cover
        lightning = None
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()})"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning,
        "ssm": ssm_cli.__version__,
        "git_commit": git_commit(),
        "device": device,
        "host": platform.node(),
    }
