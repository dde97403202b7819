"""MNIST loaders (smnist, psmnist) on IDX fixtures, gzipped or not, in both layouts."""
from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
import torch

from ssm_cli.data import load_dataset
from ssm_cli.data.cache import CACHE_FOLDER
from ssm_cli.data.mnist import pixel_permutation, read_idx
from ssm_cli.errors import UserError
from tests.data.fixtures import write_mnist_idx


@pytest.mark.parametrize("gz,layout", [(True, "flat"), (False, "torchvision")])
def test_smnist_shapes_values_and_splits(tmp_path, gz, layout):
    root = write_mnist_idx(tmp_path, n_train=60, n_test=20, gz=gz, layout=layout)
    b = load_dataset("smnist", root, val_split=6, download=False)
    assert (len(b.train), len(b.val), len(b.test)) == (54, 6, 20)
    assert (b.spec.seq_len, b.spec.d_input, b.spec.d_output) == (784, 1, 10)
    x, y = b.test[5]
    assert x.shape == (784, 1) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    folder = root / "mnist" / ("MNIST/raw" if layout == "torchvision" else "")
    name = "t10k-images-idx3-ubyte" + (".gz" if gz else "")
    images = read_idx(folder / name)
    assert images.shape == (20, 28, 28)
    np.testing.assert_allclose(x.numpy().reshape(28, 28) * 255, images[5], atol=1e-3)
    assert int(y) == 5 % 10
    assert sorted(set(b.train.targets.tolist()) | set(b.val.targets.tolist())) == list(range(10))


def test_default_split_is_a_tenth_of_train(tmp_path):
    root = write_mnist_idx(tmp_path, n_train=100, n_test=10)
    b = load_dataset("smnist", root, download=False)
    assert (len(b.train), len(b.val)) == (90, 10)


def test_psmnist_applies_one_fixed_permutation(tmp_path):
    root = write_mnist_idx(tmp_path, n_train=20, n_test=10)
    s = load_dataset("smnist", root, val_split=2, download=False)
    p = load_dataset("psmnist", root, val_split=2, download=False)
    p2 = load_dataset("psmnist", root, val_split=2, download=False)
    other = load_dataset("psmnist", root, val_split=2, permutation_seed=1, download=False)
    perm = pixel_permutation("random", 92916)
    assert sorted(perm) == list(range(784))
    for i in (0, 3):
        assert torch.equal(p.test[i][0], s.test[i][0][perm])
        assert torch.equal(p.test[i][0], p2.test[i][0])
    assert not torch.equal(p.test[0][0], other.test[0][0])
    br = load_dataset("psmnist", root, val_split=2, permutation="bitreversal", download=False)
    order = pixel_permutation("bitreversal", 0)
    assert sorted(order) == list(range(784)) and list(order[:4]) == [0, 512, 256, 768]
    assert torch.equal(br.test[1][0], s.test[1][0][order])
    with pytest.raises(UserError, match="valid: random, bitreversal"):
        load_dataset("psmnist", root, permutation="snake", download=False)


def test_cache_reuse_and_invalidation(tmp_path):
    root = write_mnist_idx(tmp_path, n_train=20, n_test=10, gz=False)
    load_dataset("smnist", root, val_split=2, download=False)
    entries = lambda: sorted(p.name for p in (root / "mnist" / CACHE_FOLDER).iterdir() if not p.name.startswith("."))  # noqa: E731
    first = entries()
    f = root / "mnist" / "t10k-labels-idx1-ubyte"
    st = f.stat()
    f.write_bytes(b"\0" * st.st_size)  # garbage, same size and mtime: the cache must not look at it
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert len(load_dataset("smnist", root, val_split=2, download=False).test) == 10
    assert entries() == first
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # now it changed: rebuild reads the garbage
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte"):
        load_dataset("smnist", root, val_split=2, download=False)


def test_truncated_and_corrupt_files_are_named(tmp_path):
    root = write_mnist_idx(tmp_path, n_train=20, n_test=10, gz=False)
    f = root / "mnist" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(UserError, match="truncated or corrupt MNIST file .*train-images-idx3-ubyte"):
        load_dataset("smnist", root, download=False)
    f.write_bytes(b"\x12\x34\x56\x78" + b"\0" * 20)
    with pytest.raises(UserError, match="not an IDX file"):
        load_dataset("smnist", root, download=False)


def test_truncated_gzip_is_named(tmp_path):
    root = write_mnist_idx(tmp_path, n_train=20, n_test=10, gz=True)
    f = root / "mnist" / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:30])
    with pytest.raises(UserError, match="corrupt MNIST file .*t10k-images-idx3-ubyte.gz"):
        load_dataset("smnist", root, download=False)
    with gzip.open(f, "wb") as out:  # a valid gzip of the wrong length
        out.write(b"\0\0\x08\x03" + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 5)
    with pytest.raises(UserError, match="implies"):
        load_dataset("smnist", root, download=False)


def test_missing_names_both_places_and_remedy(tmp_path):
    with pytest.raises(UserError) as e:
        load_dataset("psmnist", tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / "mnist") in msg and str(tmp_path / "mnist" / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg and "ssm data prepare" in msg
    with pytest.raises(UserError, match="unknown option"):
        load_dataset("smnist", tmp_path, permutation="random")
