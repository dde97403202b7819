"""The run record (``record.json``): what a run is, how it went, and what it measured.

Written atomically (temp file + rename) after every epoch, so a reader, or a run resumed after
``kill -9``, never sees half a record. Statuses: ``pending`` (config written, not started),
``running``, ``interrupted`` (stopped by SIGINT/SIGTERM; resumes like ``running`` after kill -9),
``completed``, ``failed``, ``diverged``. Records and checkpoints are readable by the group and
others as far as the user's umask allows (0644 under the usual 022), as any file the user writes.
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
STATUSES = ("pending", "running", "interrupted", "completed", "failed", "diverged")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the umask (0644 under the usual 022)."""
    return 0o666 & ~_umask()


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename, with the mode a
    plain ``open()`` would give (``mkstemp``'s own is 0600: colleagues could not read records)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.fchmod(fd, default_mode())
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


class UnreadableRecord(Exception):
    """A ``record.json`` that exists but is not a JSON object (truncated, garbage, ``[]``...)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def load_record(path: Path) -> dict | None:
    """The record in the file ``path``; None if there is none; UnreadableRecord if it is not a
    JSON object."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise UnreadableRecord(path, f"cannot be read ({type(e).__name__}: {e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UnreadableRecord(path, f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UnreadableRecord(path, f"a JSON {type(data).__name__}, not a run record (an object)")
    return data


def read_record(run_dir: Path) -> dict | None:
    """The record of a run, or None if it has none or an unreadable one (a run with an unreadable
    record is run again: ``set_aside_unreadable_record`` keeps the bad file)."""
    try:
        return load_record(Path(run_dir) / RECORD)
    except UnreadableRecord:
        return None


def set_aside_unreadable_record(run_dir: Path) -> Path | None:
    """Rename an unreadable ``record.json`` to ``record.json.corrupt`` (returned), so the run
    starts a new record and the bad file stays for inspection; None if the record is readable."""
    path = Path(run_dir) / RECORD
    try:
        load_record(path)
        return None
    except UnreadableRecord:
        aside = path.with_name(RECORD + ".corrupt")
        os.replace(path, aside)
        return aside


def set_aside_corrupt_checkpoint(ckpt: Path) -> dict | None:
    """If the checkpoint ``ckpt`` exists but cannot be loaded (truncated, overwritten, ...), rename
    it to ``<name>.corrupt`` and say so on stderr: the run then starts again from scratch instead of
    failing at every attempt. Returns what happened (for the record), None if there was nothing to
    do. Loading costs a read of the file, small beside the run it saves."""
    import sys

    import torch

    ckpt = Path(ckpt)
    if not ckpt.exists():
        return None
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or "state_dict" not in state:
            raise ValueError("not a Lightning checkpoint (no state_dict)")
        return None
    except Exception as e:  # noqa: BLE001 - any way a file fails to load: EOFError, UnpicklingError, zip errors
        reason = f"{type(e).__name__}: {e}".strip()
    aside = ckpt.with_name(ckpt.name + ".corrupt")
    os.replace(ckpt, aside)
    print(f"warning: checkpoint {ckpt} cannot be read ({reason}); kept as {aside.name}, "
          f"the run starts again from scratch", file=sys.stderr, flush=True)
    return {"corrupt_checkpoint": str(aside), "reason": reason}


def file_state(path) -> dict:
    """Path, size and modification time of a data file (size None if it is gone): a failed run's
    record keeps it, and a rerun retries the run once it differs (``data_file_changed``)."""
    path = Path(path)
    try:
        st = path.stat()
        return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {"path": str(path), "size": None, "mtime_ns": None}


def data_file_changed(record: dict) -> bool:
    """Whether the data file a run failed on (``record["data_file"]``) has changed since (edited,
    replaced or removed); False for a run that did not fail on a data file."""
    saved = record.get("data_file")
    if not isinstance(saved, dict) or not saved.get("path"):
        return False
    return file_state(saved["path"]) != saved


LOCK = ".lock"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[bool]:
    """Hold an exclusive lock on a run directory; yields False if another process holds it.

    The OS releases the lock when its process dies (also on kill -9), so a stale lock never
    blocks a rerun. The holder writes its host and pid into the lock file (``lock_holder``), so
    a process that finds the run locked can say who runs it; the file is opened without
    truncation, so a process that fails to get the lock leaves the holder's note intact.
    """
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(run_dir) / LOCK, os.O_RDWR | os.O_CREAT, default_mode())
    with os.fdopen(fd, "r+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            f.truncate(0)
            f.write(json.dumps({"host": platform.node(), "pid": os.getpid()}))
            f.flush()
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def lock_holder(run_dir: Path) -> dict:
    """``{"host", "pid"}`` of the process that holds (or last held) the run's lock; values None
    where the lock file has no such note."""
    try:
        data = json.loads((Path(run_dir) / LOCK).read_text())
    except (OSError, ValueError):
        data = None
    data = data if isinstance(data, dict) else {}
    return {"host": data.get("host"), "pid": data.get("pid")}


def locked_record(run_dir: Path) -> dict:
    """What executing a run that another process holds returns: status ``locked`` and the holder.
    Never written to ``record.json`` (that is the holder's)."""
    return {"status": "locked", "run_dir": str(run_dir), "holder": lock_holder(run_dir)}


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
