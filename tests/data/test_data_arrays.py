"""ArrayDataset.tensors (what keeps a dataset on the GPU) = the items one by one, exactly."""
import numpy as np
import pytest
import torch

from ssm_cli.data.arrays import ArrayDataset, ToSequence, ToTokens
from ssm_cli.train.loaders import dataset_tensors


@pytest.mark.parametrize("transform", [
    ToSequence(3, scale=1 / 255, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3]),
    ToSequence(1, scale=1 / 255, mean=0.13, std=0.31, order=np.random.default_rng(0).permutation(16), step=2),
    ToTokens(offset=1),
])
def test_vectorised_tensors_equal_items(tmp_path, transform):
    rng = np.random.default_rng(1)
    channels = getattr(transform, "channels", 1)
    path = tmp_path / "x.npy"
    np.save(path, rng.integers(0, 256, (40, 16 * channels), dtype=np.uint8))
    inputs = np.load(path, mmap_mode="r")  # as the caches store them
    ds = ArrayDataset(inputs, rng.integers(0, 10, 40), indices=rng.permutation(40)[:25], transform=transform)
    x, y = ds.tensors(chunk=7)
    items = [ds[i] for i in range(len(ds))]
    assert torch.equal(x, torch.stack([a for a, _ in items]))
    assert torch.equal(y, torch.stack([b for _, b in items]))
    assert dataset_tensors(ds)[0] is not None


def test_tensors_without_a_batch_transform_falls_back_to_items():
    ds = ArrayDataset(np.arange(12, dtype=np.float32).reshape(4, 3), np.arange(4))
    assert ds.tensors() is None
    x, y = dataset_tensors(ds)
    assert torch.equal(x, torch.arange(12, dtype=torch.float32).reshape(4, 3)) and torch.equal(y, torch.arange(4))
