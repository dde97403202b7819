"""Processed-array cache kept next to the raw data.

A cache entry is a folder of ``.npy`` files under ``<raw_dir>/.ssm_cache/<name>-<hash>/``. The hash
covers the processing version, the processing options and a fingerprint (path, size, mtime) of
every raw file, so changing the raw data or the processing builds a new entry; stale entries of the
same name are removed. Arrays are opened memory-mapped, so a cache larger than RAM still loads.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

CACHE_FOLDER = ".ssm_cache"


def fingerprint(files: Iterable[Path]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of each file, sorted: cheap and changes whenever a file does."""
    out = []
    for f in sorted(Path(p) for p in files):
        st = f.stat()
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return out


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
