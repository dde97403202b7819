"""CIFAR-10 loaders (scifar, lra_image) on fixtures in the real formats, and the JPEG-pack materialiser."""
from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssm_cli.data import load_dataset
from ssm_cli.data.cache import CACHE_FOLDER
from ssm_cli.errors import UserError
from tests.data.fixtures import CIFAR_CLASSES, write_cifar_folder, write_cifar_jpeg_pack, write_cifar_pickles

REPO = Path(__file__).resolve().parents[2]


def raw_batch(root: Path, name: str) -> dict:
    with open(root / "cifar10" / "cifar-10-batches-py" / name, "rb") as f:
        return pickle.load(f, encoding="bytes")


def cache_entries(source: Path) -> list[Path]:
    return sorted(p for p in (source / CACHE_FOLDER).iterdir() if p.is_dir() and not p.name.startswith("."))


def test_scifar_from_pickles_shapes_splits_and_pixel_order(tmp_path):
    root = write_cifar_pickles(tmp_path, n_train_per_batch=20, n_test=20)
    b = load_dataset("scifar", root, val_split=10, download=False)
    assert (len(b.train), len(b.val), len(b.test)) == (90, 10, 20)
    assert (b.spec.seq_len, b.spec.d_input, b.spec.d_output, b.spec.input) == (1024, 3, 10, "float")
    x, y = b.test[3]
    assert x.shape == (1024, 3) and x.dtype == torch.float32 and y.dtype == torch.int64
    # raster order, 3 channels: pixel k channel c is byte c*1024 + k of the planar row
    raw = raw_batch(root, "test_batch")
    t = b.test.transform
    restored = (x.numpy() * t.std + t.mean) * 255
    np.testing.assert_allclose(restored, raw[b"data"][3].reshape(3, 1024).T, atol=1e-3)
    assert int(y) == raw[b"labels"][3]
    # train and val partition the 100 training images; labels cover the classes
    assert set(b.train.indices) | set(b.val.indices) == set(range(100)) and not set(b.train.indices) & set(b.val.indices)
    assert set(b.train.targets.tolist()) == set(range(10))
    # per-channel normalisation by the training images: mean 0, std 1
    xs = torch.stack([b.train[i][0] for i in range(len(b.train))] + [b.val[i][0] for i in range(len(b.val))])
    assert torch.allclose(xs.mean(dim=(0, 1)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(xs.std(dim=(0, 1)), torch.ones(3), atol=1e-3)


def test_split_is_seeded_and_accepts_a_fraction(tmp_path):
    root = write_cifar_pickles(tmp_path, n_train_per_batch=20, n_test=5)
    a = load_dataset("scifar", root, val_split=0.1, split_seed=1, download=False)
    b = load_dataset("scifar", root, val_split=0.1, split_seed=1, download=False)
    c = load_dataset("scifar", root, val_split=0.1, split_seed=2, download=False)
    assert len(a.val) == 10
    assert np.array_equal(a.val.indices, b.val.indices) and not np.array_equal(a.val.indices, c.val.indices)
    with pytest.raises(UserError, match="val_split"):
        load_dataset("scifar", root, val_split=100, download=False)


def test_lra_image_grayscale_floats_and_tokens(tmp_path):
    root = write_cifar_pickles(tmp_path, n_train_per_batch=10, n_test=10)
    floats = load_dataset("lra_image", root, val_split=5, download=False)
    tokens = load_dataset("lra_image", root, val_split=5, tokenize=True, download=False)
    assert (floats.spec.d_input, floats.spec.input) == (1, "float")
    assert (tokens.spec.input, tokens.spec.vocab_size) == ("tokens", 257)
    x, _ = floats.test[0]
    assert x.shape == (1024, 1) and x.dtype == torch.float32
    ids, y = tokens.test[2]
    assert ids.shape == (1024,) and ids.dtype == torch.int64
    assert ids.min() >= 1 and ids.max() <= 256  # 0 stays free for padding
    # the grey levels are Pillow's "L" conversion of the RGB image
    rgb = raw_batch(root, "test_batch")[b"data"][2].reshape(3, 32, 32).transpose(1, 2, 0)
    grey = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).convert("L")).reshape(-1)
    assert np.array_equal(ids.numpy() - 1, grey)
    with pytest.raises(UserError, match="valid: download, split_seed, tokenize, val_split"):
        load_dataset("lra_image", root, grayscale=True)


def test_image_folder_layout(tmp_path):
    root = write_cifar_folder(tmp_path, n_train_per_class=3, n_test_per_class=2)
    b = load_dataset("scifar", root, val_split=5, download=False)
    assert (len(b.train), len(b.val), len(b.test)) == (25, 5, 20)
    assert sorted(b.test.targets.tolist()) == sorted(list(range(10)) * 2)
    # item 0 of the test split is test/airplane/0.png, pixel for pixel
    png = np.asarray(Image.open(root / "cifar10" / "test" / "airplane" / "0.png").convert("RGB")).reshape(1024, 3)
    x, y = b.test[0]
    t = b.test.transform
    np.testing.assert_allclose((x.numpy() * t.std + t.mean) * 255, png, atol=1e-3)
    assert int(y) == 0


def test_materialize_script_writes_jpegs_as_is_and_the_loader_reads_them(tmp_path):
    pack = write_cifar_jpeg_pack(tmp_path / "pack.npz", n_train=20, n_test=10)
    out = tmp_path / "data"
    subprocess.run([sys.executable, str(REPO / "scripts" / "materialize_cifar.py"), str(pack), "--out", str(out)],
                   check=True, capture_output=True, cwd=REPO)
    z = np.load(pack)
    prefix = z["prefix"].tobytes()
    for i in (0, 7):
        label = CIFAR_CLASSES[z["test_labels"][i]]
        want = prefix + z["test_blob"][z["test_offsets"][i] : z["test_offsets"][i + 1]].tobytes()
        assert (out / "cifar10" / "test" / label / f"{i}.jpg").read_bytes() == want
    b = load_dataset("scifar", out, val_split=4, download=False)
    assert (len(b.train), len(b.val), len(b.test)) == (16, 4, 10)
    # decoded pixels equal Pillow's decoding of the same bytes (test item k = sorted file order)
    first = out / "cifar10" / "test" / "airplane" / "0.jpg"
    pixels = np.asarray(Image.open(io.BytesIO(first.read_bytes())).convert("RGB")).reshape(1024, 3)
    x, y = b.test[0]
    t = b.test.transform
    np.testing.assert_allclose((x.numpy() * t.std + t.mean) * 255, pixels, atol=1e-3)


def test_cache_is_reused_and_rebuilt_when_a_raw_file_changes(tmp_path):
    root = write_cifar_pickles(tmp_path, n_train_per_batch=10, n_test=10)
    source = root / "cifar10"
    load_dataset("scifar", root, val_split=5, download=False)
    (entry,) = cache_entries(source)
    done = (entry / "DONE").stat().st_mtime_ns
    # overwrite a batch with garbage of the same size and mtime: a reused cache never reads it
    batch = source / "cifar-10-batches-py" / "test_batch"
    st = batch.stat()
    original = batch.read_bytes()
    batch.write_bytes(b"\0" * st.st_size)
    os.utime(batch, ns=(st.st_atime_ns, st.st_mtime_ns))
    b = load_dataset("scifar", root, val_split=5, download=False)
    assert cache_entries(source) == [entry] and (entry / "DONE").stat().st_mtime_ns == done
    assert len(b.test) == 10
    # a real change (new mtime) rebuilds: a new entry replaces the old one
    batch.write_bytes(original)
    os.utime(batch, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    load_dataset("scifar", root, val_split=5, download=False)
    (new,) = cache_entries(source)
    assert new != entry


def test_missing_data_names_path_layout_and_remedy(tmp_path):
    with pytest.raises(UserError) as e:
        load_dataset("scifar", tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / "cifar10") in msg
    assert "cifar-10-batches-py/data_batch_1" in msg and "train/<class>" in msg
    assert "ssm data prepare scifar" in msg and "materialize_cifar.py" in msg


def test_corrupt_and_incomplete_pickles_are_named(tmp_path):
    root = write_cifar_pickles(tmp_path, n_train_per_batch=5, n_test=5)
    folder = root / "cifar10" / "cifar-10-batches-py"
    (folder / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="corrupt CIFAR-10 batch file .*data_batch_3"):
        load_dataset("scifar", root, download=False)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((5, 100), np.uint8), b"labels": [0] * 5}))
    with pytest.raises(UserError, match="data_batch_3.*expected \\(n, 3072\\)"):
        load_dataset("scifar", root, download=False)
    (folder / "data_batch_3").unlink()
    with pytest.raises(UserError, match="batch file missing: .*data_batch_3"):
        load_dataset("scifar", root, download=False)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    root = write_cifar_pickles(tmp_path, n_train_per_batch=5, n_test=5)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (root / "cifar10" / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(UserError, match="refusing to load"):
        load_dataset("scifar", root, download=False)


def test_bad_image_folders_are_named(tmp_path):
    root = write_cifar_folder(tmp_path, n_train_per_class=1, n_test_per_class=1)
    bad = root / "cifar10" / "train" / "cat" / "0.png"
    bad.write_bytes(b"\x89PNG truncated")
    with pytest.raises(UserError, match="corrupt CIFAR-10 image .*cat/0.png"):
        load_dataset("scifar", root, val_split=1, download=False)
    Image.new("RGB", (16, 16)).save(bad)
    with pytest.raises(UserError, match="16x16, expected 32x32"):
        load_dataset("scifar", root, val_split=1, download=False)
    bad.unlink()
    (root / "cifar10" / "train" / "kitten").mkdir()
    with pytest.raises(UserError, match="unknown class folder.*kitten"):
        load_dataset("scifar", root, val_split=1, download=False)
