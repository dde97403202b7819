"""Datasets backed by arrays (in memory or memory-mapped) and the seeded splits the loaders share.

Items are made per index by a small picklable ``transform`` (uint8 -> normalised float32, int16
audio -> float32, ...), so the arrays stay compact and DataLoader workers never touch the raw files.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ssm_cli.errors import UserError


def as_tensor(row: np.ndarray) -> torch.Tensor:
    """The row as a tensor (a copy, so memory-mapped rows are never written through)."""
    return torch.from_numpy(np.array(row))


class ArrayDataset(Dataset):
    """``(transform(inputs[i]), targets[i])`` for ``i`` in ``indices``.

    inputs: (N, ...) array (np.memmap allowed: workers reopen it instead of pickling its data).
    targets: (N,) int class ids or (N, n_targets) float regression targets.
    indices: the rows of this split (default: all).
    transform: maps one row (numpy) to the model input tensor.
    """

    def __init__(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        indices: np.ndarray | None = None,
        transform: Callable[[np.ndarray], torch.Tensor] | None = None,
    ):
        self.inputs = inputs
        self.indices = np.arange(len(inputs)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.targets = np.asarray(targets)[self.indices]  # this split's targets, in item order
        self.transform = transform or as_tensor

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        x = self.transform(self.inputs[self.indices[i]])
        y = self.targets[i]
        y = torch.tensor(y, dtype=torch.int64) if np.issubdtype(self.targets.dtype, np.integer) else torch.as_tensor(y, dtype=torch.float32)
        return x, y

    def tensors(self, chunk: int = 4096, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """All items stacked, (x (n, ...), y (n, ...)) on ``device`` (default: the CPU), exactly as
        ``__getitem__`` gives them one by one; vectorised when the transform has a ``batch`` form
        (None otherwise).

        A transform with a ``fill_`` form (``ToSequence``, ``ToTokens``) gets the stored rows
        (e.g. uint8 pixels) onto the device, chunk by chunk, and maps them there into one
        preallocated tensor: a quarter of the float32 bytes cross to a GPU, and the elementwise
        float32 operations are the same IEEE operations in the same order on either device."""
        fill = getattr(self.transform, "fill_", None)
        if fill is not None:
            n = len(self.indices)
            x = None
            for i in range(0, n, chunk):
                rows = np.ascontiguousarray(self.inputs[self.indices[i:i + chunk]])  # a copy (memmap rows)
                part = self.transform.select(torch.from_numpy(rows)).to(device)
                if x is None:
                    x = torch.empty((n, *part.shape[1:]), dtype=self.transform.dtype, device=part.device)
                fill(x[i:i + len(part)], part)
            if x is None:
                x = torch.empty(0, device=device)
        else:
            batch = getattr(self.transform, "batch", None)
            if batch is None:
                return None
            parts = [batch(self.inputs[self.indices[i:i + chunk]]) for i in range(0, len(self.indices), chunk)]
            x = (torch.cat(parts) if parts else torch.empty(0)).to(device)
        integer = np.issubdtype(self.targets.dtype, np.integer)
        y = torch.as_tensor(self.targets, dtype=torch.int64 if integer else torch.float32).to(device)
        return x, y

    def __getstate__(self):
        state = dict(self.__dict__)
        if isinstance(self.inputs, np.memmap) and self.inputs.filename:
            whole = np.load(self.inputs.filename, mmap_mode="r")  # reads the header only
            if whole.shape == self.inputs.shape and whole.dtype == self.inputs.dtype:  # not a view
                state["inputs"] = ("memmap", self.inputs.filename)  # reopen, never copy GBs into a worker
        return state

    def __setstate__(self, state):
        if isinstance(state["inputs"], tuple) and state["inputs"][:1] == ("memmap",):
            state["inputs"] = np.load(state["inputs"][1], mmap_mode="r")
        self.__dict__.update(state)


def split_count(n: int, split: float | int, what: str = "val_split") -> int:
    """How many of ``n`` items a split takes: ``split`` is a count (int >= 1) or a fraction in [0, 1)."""
    if isinstance(split, bool) or not isinstance(split, (int, float)):
        raise UserError(f"{what} must be a count or a fraction, got {split!r}")
    if isinstance(split, int) and split >= 1:
        count = split
    elif 0 <= split < 1:
        count = int(round(n * split))
    else:
        raise UserError(f"{what} must be a count >= 1 or a fraction in [0, 1), got {split!r}")
    if count >= n:
        raise UserError(f"{what}={split!r} takes {count} of only {n} items; nothing would be left to train on")
    return count


def train_val_indices(n: int, val_split: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` into (train, val) index arrays, each sorted."""
    n_val = split_count(n, val_split)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def stratified_indices(
    labels: np.ndarray, fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Split each class's items by ``fractions`` (e.g. 0.7, 0.15, 0.15) with one seeded shuffle per class.

    Returns one sorted index array per fraction. The first split takes what the others leave; each
    other split gets ``round(fraction * n)`` items of a class, at least one when the class has enough.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = len(idx)
        sizes = [int(round(f * n)) for f in fractions[1:]]
        if n >= len(fractions):
            sizes = [max(1, k) for k in sizes]
        bounds = np.cumsum([n - sum(sizes)] + sizes[:-1])
        for k, chunk in enumerate(np.split(idx, bounds)):
            parts[k].append(chunk)
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


class ToSequence:
    """One stored row -> ``(L, channels)`` float32: reshape, reorder, subsample, scale, standardise.

    ``x = (row.reshape(-1, channels)[order][::step] * scale - mean) / std``; mean/std per channel.
    """

    def __init__(self, channels: int, scale: float = 1.0, mean=0.0, std=1.0, order=None, step: int = 1):
        self.channels = channels
        self.scale = np.float32(scale)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.order = None if order is None else np.asarray(order, dtype=np.int64)
        self.step = step

    dtype = torch.float32  # of the items

    def __call__(self, row: np.ndarray) -> torch.Tensor:
        return self.batch(np.asarray(row)[None])[0]

    def batch(self, rows: np.ndarray) -> torch.Tensor:
        """The same map on a stack of rows (n, ...) -> (n, L, channels), vectorised."""
        rows = np.asarray(rows)
        if not rows.flags.writeable or not rows.flags.c_contiguous:  # e.g. one row of a memmap: copy it
            rows = np.array(rows, order="C")
        x = self.select(torch.from_numpy(rows))
        return self.fill_(torch.empty(x.shape, dtype=torch.float32), x)

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """Stored rows (n, ...) -> their values (n, L, channels) as stored: reshape, reorder, subsample."""
        x = x.reshape(len(x), -1, self.channels)  # (n, L, C)
        if self.order is not None:
            x = x[:, torch.from_numpy(self.order).to(x.device)]
        if self.step != 1:
            x = x[:, :: self.step]
        return x

    def fill_(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``out`` (float32, x's shape and device) <- the items of ``x = select(rows)``.

        ``(x * scale - mean) / std`` in float32, one IEEE operation at a time in this order (in
        place: the same operations), so the CPU and a GPU give the same bits."""
        dev = out.device
        out.copy_(x)  # exact: stored values are small integers (or float32)
        out.mul_(torch.tensor(self.scale, device=dev))
        out.sub_(torch.from_numpy(self.mean).to(dev))
        out.div_(torch.from_numpy(self.std).to(dev))
        return out


class ToTokens:
    """One stored row of small non-negative ints -> ``(L,)`` int64 token ids shifted by ``offset``.

    The shift keeps id 0 free for padding (DataSpec's convention) when every value is a real symbol.
    """

    dtype = torch.int64  # of the items

    def __init__(self, offset: int = 1):
        self.offset = offset

    def __call__(self, row: np.ndarray) -> torch.Tensor:
        return self.batch(np.asarray(row)[None])[0]

    def batch(self, rows: np.ndarray) -> torch.Tensor:
        """The same map on a stack of rows (n, ...) -> (n, L), vectorised."""
        return torch.from_numpy(np.asarray(rows).reshape(len(rows), -1).astype(np.int64) + self.offset)

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """Stored rows (n, ...) -> (n, L) as stored."""
        return x.reshape(len(x), -1)

    def fill_(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``out`` (int64, x's shape and device) <- the token ids of ``x = select(rows)``."""
        out.copy_(x)
        out.add_(self.offset)
        return out


def uint8_channel_stats(images: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and std of uint8 ``images`` (..., channels) in [0, 1] units, via histograms."""
    flat = np.asarray(images).reshape(-1, channels)
    values = np.arange(256, dtype=np.float64) / 255.0
    hists = np.zeros((channels, 256))
    for start in range(0, len(flat), 1 << 22):  # chunks: bincount's intp copy stays small
        chunk = flat[start : start + (1 << 22)]
        for c in range(channels):
            hists[c] += np.bincount(chunk[:, c], minlength=256)
    mean, std = np.zeros(channels), np.zeros(channels)
    for c in range(channels):
        p = hists[c] / hists[c].sum()
        mean[c] = (p * values).sum()
        std[c] = np.sqrt((p * (values - mean[c]) ** 2).sum())
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)
