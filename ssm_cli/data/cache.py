"""Processed-array cache kept next to the raw data.

A cache entry is a folder of ``.npy`` files under ``<raw_dir>/.ssm_cache/<name>-<hash>/``. The hash
covers the processing version, the processing options and a fingerprint (path, size, mtime) of
every raw file, so changing the raw data or the processing builds a new entry; stale entries of the
same name are removed. Arrays are opened memory-mapped, so a cache larger than RAM still loads.

A load may run in a background thread (``ssm_cli.data.registry.prefetch``). There, building a
cache or downloading (``refuse_in_prefetch``) raises ``NotPrefetchable``: that work, with its
progress bars, is left to the load in the caller's thread.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

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
    paths = [f if isinstance(f, str) and _normalised(f) else str(Path(f)) for f in files]
    if len({p.startswith("/") for p in paths}) > 1:  # absolute and relative mixed: Path's own order
        paths.sort(key=Path)
    else:  # one anchor: Path compares the parts, i.e. the '/'-separated pieces
        paths.sort(key=lambda p: p.split("/"))
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((p, st.st_size, st.st_mtime_ns))
    return out


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
    return {f.stem: np.load(f, mmap_mode="r") for f in sorted(entry.glob("*.npy"))}
