"""The built-in task: sequential images of noisy 2-D gratings (no files, deterministic by seed).

Each example is a ``side × side`` image read in raster order (L = side², default 1024), one
channel: a 2-D sinusoid whose spatial frequency ``(fx, fy)`` is given by the class, with a random
phase and amplitude, plus a distractor grating of a frequency no class uses and white noise.
Every class has zero mean and the same energy, so the label is not in any global statistic:
the model must resolve frequencies along the sequence, including the vertical ones whose period
spans many rows (hundreds of steps apart) — a long-range dependency of the kind sCIFAR has.
Oscillating SSM modes (S4D-Inv/Lin/LegS) express such filters at initialization; purely
real modes (S4D-Real) and small random imaginary parts must learn them first.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ssm_cli.data.base import DataSpec, DatasetBundle
from ssm_cli.errors import UserError

# (fx, fy) cycles per image for each class: horizontal, vertical and diagonal gratings.
CLASS_FREQUENCIES: list[tuple[int, int]] = [
    (1, 0), (3, 0), (0, 1), (0, 3), (1, 1), (2, 2), (1, -2), (3, 1), (2, -1), (0, 2),
]
DISTRACTOR_FREQUENCIES: list[tuple[int, int]] = [(5, 0), (0, 5), (4, 4), (5, -3)]

OPTIONS = {"n_train": 4000, "n_val": 1000, "n_test": 1000, "side": 32, "n_classes": 10,
           "noise": 3.0, "distractor": 0.5, "seed": 0}


def make_split(n: int, side: int, n_classes: int, noise: float, distractor: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n examples -> x: (n, side*side, 1) float32, y: (n,) int64."""
    y = rng.integers(0, n_classes, size=n)
    freq = np.asarray(CLASS_FREQUENCIES[:n_classes], dtype=np.float64)[y]  # (n 2)
    dist = np.asarray(DISTRACTOR_FREQUENCIES, dtype=np.float64)[rng.integers(0, len(DISTRACTOR_FREQUENCIES), size=n)]
    rows, cols = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")  # (side side)
    grid = np.stack([cols.ravel(), rows.ravel()], axis=-1) / side  # (L 2): (x, y) in [0, 1)

    def grating(f: np.ndarray) -> np.ndarray:  # f: (n 2) -> (n L)
        phase = rng.uniform(0, 2 * math.pi, size=(len(f), 1))
        return np.cos(2 * math.pi * f @ grid.T + phase)

    amp = rng.uniform(0.5, 1.5, size=(n, 1))
    x = amp * grating(freq) + distractor * grating(dist) + noise * rng.standard_normal((n, side * side))
    return x[..., None].astype(np.float32), y.astype(np.int64)


def load(data_dir: Path | None = None, **options) -> DatasetBundle:
    """Generate the three splits. Options (defaults in ``OPTIONS``): n_train, n_val, n_test,
    side (image side; L = side²), n_classes (2..10), noise (std of white noise), distractor
    (amplitude of the distractor grating), seed (the data's own seed, independent of the run's)."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise UserError(f"unknown synthetic dataset option(s) {sorted(unknown)}; valid: {', '.join(OPTIONS)}")
    o = {**OPTIONS, **options}
    if not 2 <= o["n_classes"] <= len(CLASS_FREQUENCIES):
        raise UserError(f"synthetic n_classes must be in 2..{len(CLASS_FREQUENCIES)}, got {o['n_classes']}")
    rng = np.random.default_rng(o["seed"])
    splits = {}
    for split in ("train", "val", "test"):
        x, y = make_split(o[f"n_{split}"], o["side"], o["n_classes"], o["noise"], o["distractor"], rng)
        splits[split] = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    spec = DataSpec(name="synthetic", seq_len=o["side"] ** 2, d_input=1, d_output=o["n_classes"])
    return DatasetBundle(spec=spec, **splits)
