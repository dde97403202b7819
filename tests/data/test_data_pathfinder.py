"""Pathfinder / Path-X loaders: release PNGs + metadata -> cached uint8 pixels, 80/10/10 split."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ssm_cli.data import load_dataset
from ssm_cli.data import pathfinder
from ssm_cli.data.cache import CACHE_FOLDER
from ssm_cli.errors import UserError
from tests.data.lra_fixtures import pathfinder_root, write_pathfinder


def ids_of(ds) -> list[int]:
    """Fixture image number of every item (pixel 0 holds it)."""
    out = []
    for i in range(len(ds)):
        x, _ = ds[i]
        v = float(x[0, 0]) if x.ndim == 2 else int(x[0]) - 1
        out.append(int(round((v + 1) * 127.5)) if x.ndim == 2 else v)
    return out


def test_float_items_split_and_labels(tmp_path):
    images, labels = write_pathfinder(tmp_path, n=20)
    b = load_dataset("pathfinder", tmp_path, download=False)
    assert (len(b.train), len(b.val), len(b.test)) == (16, 2, 2)
    assert b.spec.seq_len == 1024 and b.spec.d_input == 1 and b.spec.d_output == 2 and b.spec.input == "float"
    seen = []
    for ds in (b.train, b.val, b.test):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (1024, 1) and x.dtype == torch.float32 and y.dtype == torch.int64
            j = int(round((float(x[0, 0]) + 1) * 127.5))
            expect = (images[j].astype(np.float32) / 255 - 0.5) / 0.5
            assert torch.allclose(x[:, 0], torch.from_numpy(expect), atol=1e-6)
            assert int(y) == labels[j]
            seen.append(j)
    assert sorted(seen) == list(range(20))  # the splits partition the data


def test_tokenized_items(tmp_path):
    images, _ = write_pathfinder(tmp_path, n=10)
    b = load_dataset("pathfinder", tmp_path, download=False, tokenize=True)
    assert b.spec.input == "tokens" and b.spec.vocab_size == 257
    x, _ = b.train[0]
    assert x.shape == (1024,) and x.dtype == torch.int64
    j = int(x[0]) - 1
    assert x.tolist() == (images[j].astype(np.int64) + 1).tolist()


def test_split_is_seeded(tmp_path):
    write_pathfinder(tmp_path, n=30)
    a = ids_of(load_dataset("pathfinder", tmp_path, download=False).test)
    assert ids_of(load_dataset("pathfinder", tmp_path, download=False).test) == a
    assert ids_of(load_dataset("pathfinder", tmp_path, download=False, split_seed=1).test) != a
    b = load_dataset("pathfinder", tmp_path, download=False, val_split=0.2, test_split=0.0)
    assert (len(b.train), len(b.val), len(b.test)) == (24, 6, 0)


def test_numpy_saved_metadata_is_read(tmp_path):
    _, labels = write_pathfinder(tmp_path, n=12, npy_metadata=True)
    b = load_dataset("pathfinder", tmp_path, download=False, val_split=0.0, test_split=0.0)
    assert len(b.train) == 12
    got = {ids_of(b.train)[i]: int(b.train[i][1]) for i in range(12)}
    assert got == {j: int(labels[j]) for j in range(12)}


def test_pathx_is_128(tmp_path):
    write_pathfinder(tmp_path, n=10, resolution=128)
    b = load_dataset("pathx", tmp_path, download=False)
    assert b.spec.seq_len == 16384 and b.spec.name == "pathx"
    assert (len(b.train), len(b.val), len(b.test)) == (8, 1, 1)
    assert b.train[0][0].shape == (16384, 1)
    with pytest.raises(UserError, match="unknown option"):
        load_dataset("pathx", tmp_path, resolution=32)


def test_bad_options(tmp_path):
    write_pathfinder(tmp_path, n=4)
    with pytest.raises(UserError, match=r"unknown option\(s\) pool.*valid: resolution.*tokenize.*split_seed"):
        load_dataset("pathfinder", tmp_path, pool=2)
    with pytest.raises(UserError, match="resolution 48.*valid: 32, 64, 128, 256"):
        load_dataset("pathfinder", tmp_path, resolution=48)
    with pytest.raises(UserError, match="val_split"):
        load_dataset("pathfinder", tmp_path, val_split=0.7)


def test_missing_folder_names_path_and_remedies(tmp_path):
    with pytest.raises(UserError) as e:
        load_dataset("pathx", tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / "lra" / "pathfinder128" / "curv_contour_length_14" / "metadata") in msg
    assert "imgs/<k>/sample_<i>.png, metadata/<k>.npy" in msg
    assert "lra_release.gz" in msg and "ssm data generate pathfinder --size 128" in msg


def test_corrupt_png_is_named(tmp_path):
    write_pathfinder(tmp_path, n=10)
    f = pathfinder_root(tmp_path) / "imgs" / "1" / "sample_0.png"
    f.write_bytes(f.read_bytes()[:40])
    with pytest.raises(UserError, match=r"imgs/1/sample_0\.png"):
        load_dataset("pathfinder", tmp_path, download=False)


def test_missing_png_is_named(tmp_path):
    write_pathfinder(tmp_path, n=10)
    (pathfinder_root(tmp_path) / "imgs" / "0" / "sample_3.png").unlink()
    with pytest.raises(UserError, match=r"sample_3\.png"):
        load_dataset("pathfinder", tmp_path, download=False)


def test_wrong_image_size_is_named(tmp_path):
    write_pathfinder(tmp_path, n=10, resolution=64)
    root = pathfinder_root(tmp_path, 64)
    (root.parent.parent / "pathfinder32").mkdir()
    root.rename(tmp_path / "lra" / "pathfinder32" / "curv_contour_length_14")
    with pytest.raises(UserError, match=r"sample_0\.png is 64x64, expected 32x32"):
        load_dataset("pathfinder", tmp_path, download=False)


def test_corrupt_metadata_is_named(tmp_path):
    write_pathfinder(tmp_path, n=10)
    (pathfinder_root(tmp_path) / "metadata" / "1.npy").write_text("imgs/1 sample_0.png 0\n")
    with pytest.raises(UserError, match=r"metadata/1\.npy, row 1"):
        load_dataset("pathfinder", tmp_path, download=False)


def test_cache_reuse_and_invalidation(tmp_path, monkeypatch):
    write_pathfinder(tmp_path, n=10)
    load_dataset("pathfinder", tmp_path, download=False)
    cache = pathfinder_root(tmp_path) / CACHE_FOLDER
    before = [p.name for p in cache.iterdir()]
    calls = []
    real = pathfinder.decode_images
    monkeypatch.setattr(pathfinder, "decode_images", lambda *a: calls.append(1) or real(*a))
    load_dataset("pathfinder", tmp_path, download=False, tokenize=True)
    assert calls == [] and [p.name for p in cache.iterdir()] == before
    write_pathfinder(tmp_path, n=14)
    b = load_dataset("pathfinder", tmp_path, download=False, val_split=0.0, test_split=0.0)
    assert calls == [1] and len(b.train) == 14
    assert [p.name for p in cache.iterdir()] != before and len(list(cache.iterdir())) == 1
    assert isinstance(b.train.images, np.memmap)  # items are cut from a memory-mapped array
