"""Cache keys: the raw files' fingerprint is the same as before it was made faster, so caches
built by earlier versions are found (no rebuild) and a changed file still builds a new entry.
Values kept in an entry (``derived_array``) are the values computed without it, bit for bit."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ssm_cli.data import cifar, load_dataset
from ssm_cli.data.arrays import uint8_channel_stats
from ssm_cli.data.cache import CACHE_FOLDER, derived_array, fingerprint
from ssm_cli.data.cifar import PROCESSING_VERSION, load_images
from tests.data.fixtures import write_cifar_folder, write_cifar_pickles


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


def derived_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "cifar10" / CACHE_FOLDER).glob("*/derived/*.npy"))


def items(bundle) -> torch.Tensor:
    return torch.stack([bundle.train[i][0] for i in range(len(bundle.train))] + [bundle.test[i][0] for i in range(len(bundle.test))])


@pytest.mark.parametrize("name,options", [("scifar", {}), ("lra_image", {}), ("lra_image", {"tokenize": True})])
def test_statistics_and_views_kept_in_the_entry_are_the_computed_ones(tmp_path, monkeypatch, name, options):
    root = write_cifar_pickles(tmp_path, n_train_per_batch=12, n_test=10)
    first = load_dataset(name, root, val_split=6, download=False, **options)
    assert derived_files(root)  # the first load (of an entry without them, as earlier versions left it) stores them
    raw = load_images(root, download=False)
    images = raw["train_x"] if name == "scifar" else cifar.grayscale(raw["train_x"])
    if not options.get("tokenize"):
        mean, std = uint8_channel_stats(images, 3 if name == "scifar" else 1)
        assert np.array_equal(first.train.transform.mean, mean) and np.array_equal(first.train.transform.std, std)

    def recomputed(*args, **kwargs):
        raise AssertionError("computed again although the cache entry keeps it")

    monkeypatch.setattr(cifar, "uint8_channel_stats", recomputed)
    monkeypatch.setattr(cifar, "grayscale", recomputed)
    again = load_dataset(name, root, val_split=6, download=False, **options)
    a, b = items(again), items(first)
    assert a.dtype == b.dtype and torch.equal(a.view(torch.uint8), b.view(torch.uint8))  # the same bits


def test_an_unreadable_derived_file_is_computed_again(tmp_path):
    root = write_cifar_pickles(tmp_path, n_train_per_batch=12, n_test=10)
    first = load_dataset("scifar", root, val_split=6, download=False)
    [stats] = (root / "cifar10" / CACHE_FOLDER).glob("*/derived/train_x-channel_stats3-v1.npy")
    stats.write_bytes(b"torn")
    again = load_dataset("scifar", root, val_split=6, download=False)
    assert np.array_equal(again.train.transform.mean, first.train.transform.mean)
    assert np.load(stats).shape == (2, 3)  # replaced


def test_arrays_not_from_a_cache_entry_are_computed_each_time():
    calls = []
    value = derived_array({"x": np.zeros(3)}, "anything", lambda: calls.append(1) or np.ones(2))
    assert np.array_equal(value, np.ones(2)) and calls == [1]


def test_speech_commands_cache_of_an_earlier_version_is_found(tmp_path):
    from ssm_cli.data import speech_commands as sc
    from tests.data.fixtures import write_speech_commands

    root = write_speech_commands(tmp_path, n_per_word=6, length=400)
    folder = sc.locate(root)
    words = sc.WORDS["v0.02"]
    clips = [wav for word in words if (folder / word).is_dir() for wav in sorted((folder / word).glob("*.wav"))]
    files = clips + [folder / "validation_list.txt", folder / "testing_list.txt"]
    digest = hashlib.sha256(json.dumps(fingerprint_before(files)).encode()).hexdigest()
    key = {"version": sc.PROCESSING_VERSION, "words": words, "n_files": len(files), "files": digest}
    entry = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    arrays = sc.load_waveforms(root, download=False)
    assert [p.name for p in (folder / CACHE_FOLDER).iterdir() if p.is_dir()] == [f"speech-v0.02-{entry}"]
    assert len(arrays["audio"]) == len(clips) and int((arrays["split"] == 1).sum()) == 10  # the lists' clips found
