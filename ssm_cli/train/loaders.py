"""Batches for training and evaluation.

Small datasets (all of sCIFAR is 737 MB as float32) are kept whole as tensors on the training
device and batched by indexing, which removes the DataLoader and host-to-device copies from the
step; larger ones go through a standard DataLoader. Evaluation never drops the last batch.
Datasets stored compactly (e.g. uint8 pixels) go to the device as stored and are mapped to their
items there (``ArrayDataset.tensors``): the same values, a quarter of the bytes to copy.
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ssm_cli.trace import trace

ON_DEVICE_LIMIT_BYTES = 4 * 2**30


def dataset_tensors(ds: Dataset, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All items of a map-style dataset stacked: (x (n ...), y (n ...)), on ``device`` (default:
    the CPU)."""
    if isinstance(ds, TensorDataset) and len(ds.tensors) == 2:
        x, y = ds.tensors
        return x.to(device), y.to(device)
    fast = ds.tensors(device=device) if callable(getattr(ds, "tensors", None)) else None  # e.g. ArrayDataset, vectorised
    if fast is not None:
        return fast
    xs, ys = [], []
    for x, y in DataLoader(ds, batch_size=1024, shuffle=False, num_workers=0):
        xs.append(x)
        ys.append(y)
    return torch.cat(xs).to(device), torch.cat(ys).to(device)


def dataset_nbytes(ds: Dataset) -> int:
    x, y = ds[0]
    return len(ds) * (torch.as_tensor(x).element_size() * torch.as_tensor(x).numel()
                      + torch.as_tensor(y).element_size() * torch.as_tensor(y).numel())


class TensorBatches:
    """Iterable of (x, y) batches from tensors already on the device; reshuffled every pass."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.x.device)
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]


def make_loader(ds: Dataset, batch_size: int, shuffle: bool, device: torch.device | None,
                num_workers: int = 0, seed: int = 0):
    """TensorBatches on ``device`` when given, else a DataLoader (drop_last=False)."""
    if device is not None:
        x, y = dataset_tensors(ds, device)
        trace(f"data on {device}: {tuple(x.shape)} {str(x.dtype).replace('torch.', '')}")
        return TensorBatches(x, y, batch_size, shuffle, seed)
    g = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=False, num_workers=num_workers,
                      generator=g if shuffle else None, persistent_workers=num_workers > 0)
