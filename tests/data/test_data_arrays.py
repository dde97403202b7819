"""ArrayDataset.tensors (what keeps a dataset on the GPU) = the items one by one, exactly, and
the same bits as the float32 formula applied on the host before the rows went to the device."""
import numpy as np
import pytest
import torch

from ssm_cli.data import load_dataset
from ssm_cli.data.arrays import ArrayDataset, ToSequence, ToTokens
from ssm_cli.train.loaders import dataset_tensors, make_loader
from tests.data.fixtures import write_cifar_pickles

TRANSFORMS = [
    ToSequence(3, scale=1 / 255, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3]),
    ToSequence(1, scale=1 / 255, mean=0.13, std=0.31, order=np.random.default_rng(0).permutation(16), step=2),
    ToTokens(offset=1),
]


def reference(transform, rows: np.ndarray) -> torch.Tensor:
    """The items as the host computed them before the device path existed (the formula, verbatim)."""
    if isinstance(transform, ToTokens):
        return torch.from_numpy(np.asarray(rows).reshape(len(rows), -1).astype(np.int64) + transform.offset)
    x = torch.from_numpy(np.array(rows, order="C")).reshape(len(rows), -1, transform.channels)
    if transform.order is not None:
        x = x[:, torch.from_numpy(transform.order)]
    if transform.step != 1:
        x = x[:, :: transform.step]
    x = (x.to(torch.float32) * torch.from_numpy(np.array(transform.scale))
         - torch.from_numpy(transform.mean)) / torch.from_numpy(transform.std)
    return x.contiguous()


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.cpu(), b.cpu()
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.view(torch.int32), b.view(torch.int32)) if a.dtype == torch.float32 else torch.equal(a, b)


def stored(tmp_path, rows: np.ndarray, transform, n_split: int = 25) -> ArrayDataset:
    np.save(tmp_path / "x.npy", rows)
    inputs = np.load(tmp_path / "x.npy", mmap_mode="r")  # as the caches store them
    rng = np.random.default_rng(1)
    return ArrayDataset(inputs, rng.integers(0, 10, len(rows)), indices=np.sort(rng.permutation(len(rows))[:n_split]),
                        transform=transform)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_vectorised_tensors_equal_items(tmp_path, transform):
    channels = getattr(transform, "channels", 1)
    ds = stored(tmp_path, np.random.default_rng(1).integers(0, 256, (40, 16 * channels), dtype=np.uint8), transform)
    x, y = ds.tensors(chunk=7)
    items = [ds[i] for i in range(len(ds))]
    assert same_bits(x, torch.stack([a for a, _ in items]))
    assert torch.equal(y, torch.stack([b for _, b in items]))
    assert same_bits(x, reference(transform, np.asarray(ds.inputs)[ds.indices]))
    assert same_bits(dataset_tensors(ds, "cpu")[0], x)


@pytest.mark.parametrize("dtype,step", [(np.int16, 2), (np.float64, 1), (np.float32, 1)])
def test_other_stored_types_match_the_formula(tmp_path, dtype, step):
    """int16 audio subsampled (Speech Commands at 8 kHz), float64/float32 series (BIDMC)."""
    rng = np.random.default_rng(2)
    rows = (rng.normal(0, 3000, (30, 40)) if dtype == np.int16 else rng.normal(0, 2, (30, 40))).astype(dtype)
    transform = ToSequence(2, scale=1 / 32768 if dtype == np.int16 else 1.0, mean=[0.1, -0.3], std=[0.7, 1.9], step=step)
    ds = stored(tmp_path, rows, transform, n_split=20)
    x, _ = ds.tensors(chunk=6)
    assert same_bits(x, reference(transform, np.asarray(ds.inputs)[ds.indices]))
    assert same_bits(x, torch.stack([ds[i][0] for i in range(len(ds))]))


def test_tensors_without_a_batch_transform_falls_back_to_items():
    ds = ArrayDataset(np.arange(12, dtype=np.float32).reshape(4, 3), np.arange(4))
    assert ds.tensors() is None
    x, y = dataset_tensors(ds)
    assert torch.equal(x, torch.arange(12, dtype=torch.float32).reshape(4, 3)) and torch.equal(y, torch.arange(4))


def test_empty_split(tmp_path):
    ds = stored(tmp_path, np.zeros((4, 6), dtype=np.uint8), TRANSFORMS[0], n_split=0)
    x, y = ds.tensors()
    assert len(x) == 0 and len(y) == 0


def scifar_splits(tmp_path):
    root = write_cifar_pickles(tmp_path, n_train_per_batch=30, n_test=20)
    b = load_dataset("scifar", root, val_split=15, download=False)
    return {"train": b.train, "val": b.val, "test": b.test}


def test_scifar_on_device_is_the_host_formula(tmp_path):
    """The real on-disk format (uint8 cache, memory-mapped) through make_loader's on-device path."""
    for name, ds in scifar_splits(tmp_path).items():
        loader = make_loader(ds, 8, False, torch.device("cpu"))
        assert same_bits(loader.x, reference(ds.transform, np.asarray(ds.inputs)[ds.indices])), name
        assert torch.equal(loader.y, torch.as_tensor(ds.targets, dtype=torch.int64))


@pytest.mark.gpu
@pytest.mark.parametrize("transform", TRANSFORMS + [ToSequence(2, scale=1 / 32768, mean=[0.1, -0.3], std=[0.7, 1.9], step=2)])
def test_normalised_on_the_gpu_bit_for_bit(tmp_path, transform):
    rng = np.random.default_rng(3)
    channels = getattr(transform, "channels", 1)
    rows = (rng.integers(-32768, 32768, (50, 32 * channels), dtype=np.int16) if getattr(transform, "step", 1) == 2 and channels == 2
            else rng.integers(0, 256, (50, 32 * channels), dtype=np.uint8))
    ds = stored(tmp_path, rows, transform, n_split=45)
    on_gpu, y = ds.tensors(chunk=16, device="cuda")
    assert on_gpu.is_cuda and y.is_cuda
    assert same_bits(on_gpu, reference(transform, np.asarray(ds.inputs)[ds.indices]))


@pytest.mark.gpu
def test_scifar_on_the_gpu_bit_for_bit(tmp_path):
    for name, ds in scifar_splits(tmp_path).items():
        loader = make_loader(ds, 8, True, torch.device("cuda"))
        assert loader.x.is_cuda and same_bits(loader.x, reference(ds.transform, np.asarray(ds.inputs)[ds.indices])), name
