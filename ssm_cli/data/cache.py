"""Processed-array cache kept next to the raw data.

A cache entry is a folder of ``.npy`` files under ``<raw_dir>/.ssm_cache/<name>-<hash>/``. The hash
covers the processing version, the processing options and a fingerprint (path, size, mtime) of
every raw file, so changing the raw data or the processing builds a new entry; stale entries of the
same name are removed. Arrays are opened memory-mapped, so a cache larger than RAM still loads.
A damaged entry (a truncated or overwritten ``.npy``) is named on stderr and rebuilt.
Values every load would compute again from an entry's arrays (normalisation statistics, a
grayscale view) are kept in the entry's ``derived/`` folder once computed (``derived_array``);
entries of earlier versions get them at their first load.

A load may run in a background thread (``ssm_cli.data.registry.prefetch``). There, building a
cache or downloading (``refuse_in_prefetch``) raises ``NotPrefetchable``: that work, with its
progress bars, is left to the load in the caller's thread.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Callable, Iterable, Iterator

import numpy as np

from ssm_cli.errors import DataFileError

CACHE_FOLDER = ".ssm_cache"

_LOCAL = threading.local()


class NotPrefetchable(Exception):
    """A step a background load may not take (a download, a cache build): load in the caller."""


@contextmanager
def prefetching() -> Iterator[None]:
    """Mark this thread as running a background load while inside the block."""
    _LOCAL.prefetching = True
    try:
        yield
    finally:
        _LOCAL.prefetching = False


def refuse_in_prefetch(what: str) -> None:
    """Raise ``NotPrefetchable`` in a background load: ``what`` must run in the caller's thread."""
    if getattr(_LOCAL, "prefetching", False):
        raise NotPrefetchable(what)


def fingerprint(files: Iterable[Path | str]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of each file, sorted by path: cheap and changes whenever a file does.

    Paths are written as ``str(Path(p))`` and ordered as ``Path``s order (both are part of cache
    keys); strings already in that form are taken as they are, which saves building a ``Path``
    per file (tens of thousands for an image folder)."""
    paths = [_as_str(f) for f in files]
    if len({p.startswith("/") for p in paths}) > 1:  # absolute and relative mixed: Path's own order
        paths.sort(key=Path)
    else:  # one anchor: Path compares the parts, i.e. the '/'-separated pieces
        paths.sort(key=lambda p: p.split("/"))
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((p, st.st_size, st.st_mtime_ns))
    return out


def _as_str(f: Path | str) -> str:
    """``str(Path(f))``, without building a Path when ``f`` is one already or a normalised string."""
    if isinstance(f, PurePath):
        return str(f)
    if isinstance(f, str) and _normalised(f):
        return f
    return str(Path(f))


def _normalised(p: str) -> bool:
    """True if ``str(Path(p)) == p`` (no empty or '.' parts), by a check cheaper than building the Path."""
    return bool(p) and "//" not in p and "/./" not in p and not p.startswith("./") and not p.endswith(("/", "/."))


def cached_arrays(
    raw_dir: Path,
    name: str,
    key: dict,
    build: Callable[[], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Return the arrays ``build()`` makes, from the cache when ``key`` matches.

    raw_dir: the dataset's raw folder (the cache lives inside it).
    name: a short name for this processed view, e.g. ``"sc35"``.
    key: JSON-able description of everything the arrays depend on (processing version,
        options, ``fingerprint(raw files)``).
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    root = Path(raw_dir) / CACHE_FOLDER
    entry = root / f"{name}-{digest}"
    if (entry / "DONE").exists():
        try:
            return _load_entry(entry)
        except DataFileError as e:  # a damaged cache is rebuilt from the raw files: say which file
            refuse_in_prefetch(f"rebuilding the damaged cache {entry}")
            print(f"warning: {e}; rebuilding the cache entry {entry}", file=sys.stderr, flush=True)
            shutil.rmtree(entry, ignore_errors=True)
            if entry.exists():
                raise DataFileError(e.path, f"{e}; the cache entry {entry} cannot be removed: delete it by hand") from None
    if not (entry / "DONE").exists():
        refuse_in_prefetch(f"building the cache {entry}")
        arrays = build()
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        for k, v in arrays.items():
            np.save(tmp / f"{k}.npy", np.ascontiguousarray(v))
        (tmp / "key.json").write_text(json.dumps(key, sort_keys=True, default=str, indent=1))
        (tmp / "DONE").write_text("ok\n")
        for stale in root.glob(f"{name}-*"):
            if stale.is_dir() and stale.name != entry.name:
                shutil.rmtree(stale, ignore_errors=True)
        if entry.exists():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, entry)
    return _load_entry(entry)


def _load_entry(entry: Path) -> dict[str, np.ndarray]:
    """The arrays of a cache entry, memory-mapped; DataFileError naming a file that is truncated,
    not an .npy file, or missing (an entry is complete once it has DONE: key.json names its files)."""
    arrays = {}
    for f in sorted(entry.glob("*.npy")):
        try:
            arrays[f.stem] = np.load(f, mmap_mode="r")
        except (OSError, ValueError, EOFError) as err:  # truncated: "mmap length is greater than file size"
            raise DataFileError(f, f"damaged cache file {f} ({type(err).__name__}: {err})") from None
    if not arrays:
        raise DataFileError(entry, f"cache entry {entry} holds no arrays")
    return arrays


DERIVED = "derived"


def derived_array(arrays: dict[str, np.ndarray], name: str, compute: Callable[[], np.ndarray],
                  mmap: bool = False) -> np.ndarray:
    """``compute()``, kept in the cache entry that ``arrays`` (a ``cached_arrays`` result) came from.

    The first load computes and stores it (``<entry>/derived/<name>.npy``, written atomically),
    later loads read it back: the same array, bit for bit. ``name`` must change whenever
    ``compute`` does. Nothing is stored when the entry cannot be written (e.g. a read-only data
    folder) or ``arrays`` are not a cache entry's; then it is computed at every load, as before.
    ``mmap``: open the stored array memory-mapped (large arrays)."""
    first = next(iter(arrays.values()), None)
    filename = getattr(first, "filename", None)
    entry = Path(filename).parent if filename else None
    if entry is None or not (entry / "DONE").exists():
        return compute()
    path = entry / DERIVED / f"{name}.npy"
    if path.exists():
        try:
            return np.load(path, mmap_mode="r" if mmap else None)
        except (OSError, ValueError):  # unreadable: compute it again (and replace it)
            pass
    value = np.ascontiguousarray(compute())
    tmp = path.with_name(f".{name}-{os.getpid()}-{threading.get_ident()}.npy")  # like the entry's files
    try:
        path.parent.mkdir(exist_ok=True)
        with open(tmp, "wb") as f:
            np.save(f, value)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return value
    return np.load(path, mmap_mode="r") if mmap else value
