"""Cache keys: the raw files' fingerprint is the same as before it was made faster, so caches
built by earlier versions are found (no rebuild) and a changed file still builds a new entry."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ssm_cli.data.cache import CACHE_FOLDER, fingerprint
from ssm_cli.data.cifar import PROCESSING_VERSION, load_images
from tests.data.fixtures import write_cifar_folder


def fingerprint_before(files) -> list[tuple[str, int, int]]:
    """The implementation the caches on disk were keyed with."""
    out = []
    for f in sorted(Path(p) for p in files):
        st = f.stat()
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return out


def tricky_tree(root: Path) -> list[Path]:
    # '-' and '.' sort before '/' as characters, after it as path parts; digits, case, spaces, unicode
    names = ["a/b.jpg", "a-b/c.jpg", "a.b/c.jpg", "a/10.jpg", "a/9.jpg", "A/x.jpg", "a b/é.png", "ab.jpg", "a/b/c.jpg"]
    files = []
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(n.encode())
        files.append(p)
    return files


def test_fingerprint_is_unchanged_for_paths_and_strings(tmp_path, monkeypatch):
    files = tricky_tree(tmp_path / "raw")
    expected = fingerprint_before(files)
    assert fingerprint(files) == expected
    assert fingerprint([str(f) for f in reversed(files)]) == expected
    assert fingerprint([f"{f.parent}//{f.name}" for f in files]) == expected  # not normalised: through Path
    monkeypatch.chdir(tmp_path)
    relative = [f.relative_to(tmp_path) for f in files]
    assert fingerprint([str(f) for f in relative]) == fingerprint_before(relative)
    mixed = relative[:4] + files[4:]
    assert fingerprint(mixed) == fingerprint_before(mixed)


def test_cifar_folder_cache_of_an_earlier_version_is_found(tmp_path):
    root = write_cifar_folder(tmp_path, n_train_per_class=2, n_test_per_class=1)
    source = root / "cifar10"
    files = [source / split / c / f for split in ("train", "test") for c in sorted(os.listdir(source / split))
             for f in os.listdir(source / split / c)]
    digest = hashlib.sha256(json.dumps(fingerprint_before(files)).encode()).hexdigest()
    key = {"version": PROCESSING_VERSION, "kind": "folder", "n_files": len(files), "files": digest}
    entry = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    load_images(root, download=False)
    assert [p.name for p in (source / CACHE_FOLDER).iterdir()] == [f"cifar10-folder-{entry}"]
    os.utime(files[0], ns=(1, 1))  # a raw file changed: a new entry replaces the old one
    load_images(root, download=False)
    assert [p.name for p in (source / CACHE_FOLDER).iterdir()] != [f"cifar10-folder-{entry}"]
