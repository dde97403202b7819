"""Statistics of an LRA ListOps or Pathfinder copy, generated or official, beside the release's
(``docs/lra-data.md``): what ``ssm data verify listops|pathfinder`` reports.

Computed from the loaded arrays (the cache of the raw files), whole, with numpy: a copy of the
full size takes seconds. A statistic outside the release's bounds is a failure; one that merely
differs from the release's published value (e.g. a smaller copy's counts) is a warning.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssm_cli.data.base import DatasetBundle

# ListOps as the release's generator makes it (google-research/long-range-arena, data/listops.py)
LISTOPS_SIZES = (96000, 2000, 2000)
LISTOPS_MIN_LEN, LISTOPS_MAX_LEN = 500, 2000  # kept: min < length < max, tokens without parentheses
LISTOPS_MAX_DEPTH, LISTOPS_MAX_ARGS = 10, 10
LISTOPS_OPERATORS = ("MIN", "MAX", "MED", "SM")  # each drawn with probability 1/4
OPERATOR_SHARE_TOLERANCE = 0.03  # |share - 1/4| on a full-size copy is ~0.001; a small sample's more
# the stored bytes of the loader (lra.listops_to_bytes): operators a-d, then "]"
_OP_BYTES = tuple(ord(c) for c in "abcd")
_END_BYTE = ord("]")

# Pathfinder 32x32, contour length 14 (the LRA release's hardest split)
PATHFINDER_IMAGES = 200_000  # 200 metadata files of 1000 images
PATHFINDER_SIDE = 32


@dataclass
class Stat:
    what: str
    status: str  # "ok" | "warn" | "fail"
    detail: str


def _share(counts: np.ndarray) -> str:
    total = max(int(counts.sum()), 1)
    return " ".join(f"{i}:{100 * c / total:.1f}%" for i, c in enumerate(counts))


def listops_stats(bundle: DatasetBundle) -> list[Stat]:
    """Counts, lengths, labels, operators, depth and arguments of every split."""
    out: list[Stat] = []
    splits = {"train": bundle.train, "val": bundle.val, "test": bundle.test}
    sizes = tuple(len(s) for s in splits.values())
    out.append(Stat("counts", "ok" if sizes == LISTOPS_SIZES else "warn",
                    f"{'/'.join(map(str, sizes))} (release {'/'.join(map(str, LISTOPS_SIZES))})"))
    for name, ds in splits.items():
        tokens, offsets, labels = np.asarray(ds.tokens), np.asarray(ds.offsets), np.asarray(ds.labels)
        if len(labels) == 0:
            continue
        lengths = np.diff(offsets)  # (n,) tokens without parentheses
        in_bounds = bool(((lengths > LISTOPS_MIN_LEN) & (lengths < LISTOPS_MAX_LEN)).all())
        q = np.percentile(lengths, [5, 50, 95])
        out.append(Stat(f"{name} lengths", "ok" if in_bounds else "warn",
                        f"min {lengths.min()}, p5 {q[0]:.0f}, median {q[1]:.0f}, mean {lengths.mean():.0f}, "
                        f"p95 {q[2]:.0f}, max {lengths.max()} (release: {LISTOPS_MIN_LEN} < L < {LISTOPS_MAX_LEN})"))
        counts = np.bincount(labels, minlength=10)
        out.append(Stat(f"{name} labels", "ok" if counts.min() > 0 or len(labels) < 100 else "warn",
                        f"{_share(counts)} (most common {100 * counts.max() / len(labels):.1f}%)"))
        ops = np.stack([tokens == b for b in _OP_BYTES])  # (4, total)
        n_ops = ops.sum(1)  # (4,)
        share = n_ops / max(n_ops.sum(), 1)
        ok = bool(np.abs(share - 0.25).max() <= OPERATOR_SHARE_TOLERANCE) or len(labels) < 100
        out.append(Stat(f"{name} operators", "ok" if ok else "warn",
                        ", ".join(f"{o} {100 * s:.1f}%" for o, s in zip(LISTOPS_OPERATORS, share))
                        + " (release: 25% each)"))
        depth, args = _depth_and_args(tokens, offsets, ops.any(0))
        out.append(Stat(f"{name} depth", "ok" if depth.max() <= LISTOPS_MAX_DEPTH else "fail",
                        f"mean {depth.mean():.2f}, max {depth.max()} (release: at most {LISTOPS_MAX_DEPTH})"))
        out.append(Stat(f"{name} arguments", "ok" if 2 <= args <= LISTOPS_MAX_ARGS else "fail",
                        f"{args:.2f} per operator on average (release: 2..{LISTOPS_MAX_ARGS} each)"))
    return out


def _depth_and_args(tokens: np.ndarray, offsets: np.ndarray, is_op: np.ndarray) -> tuple[np.ndarray, float]:
    """Per expression its tree depth ((n,) int; the generator's ``max_depth`` counts the same way:
    a bare digit has depth 1, an operator over digits 2), and the mean
    number of arguments per operator over all expressions (every node but a root is one argument)."""
    step = is_op.astype(np.int64) - (tokens == _END_BYTE)  # (total,) +1 operator, -1 "]"
    level = np.cumsum(step)  # (total,) open operators after each token, counted from the start
    starts = offsets[:-1]
    base = np.concatenate([[0], level])[starts]  # (n,) level before each expression (0 if well formed)
    depth = np.maximum.reduceat(level, starts) - base + 1  # (n,) operator levels + the digits' level
    n_ops = int(is_op.sum())
    n_digits = int(((tokens >= ord("0")) & (tokens <= ord("9"))).sum())
    args = (n_digits + n_ops - len(starts)) / max(n_ops, 1)
    return depth, args


def pathfinder_stats(bundle: DatasetBundle) -> list[Stat]:
    """Image count and size, label balance and mean pixel intensity over all images."""
    ds = bundle.train  # the splits share one image array
    images, labels = np.asarray(ds.images), np.asarray(ds.labels)  # (N, side**2) uint8, (N,)
    side = int(round(np.sqrt(images.shape[1])))
    out = [
        Stat("images", "ok" if len(labels) == PATHFINDER_IMAGES else "warn",
             f"{len(labels)} (release {PATHFINDER_IMAGES}), split {len(bundle.train)}/{len(bundle.val)}/{len(bundle.test)}"),
        Stat("image size", "ok" if side == PATHFINDER_SIDE else "warn", f"{side}x{side} (release {PATHFINDER_SIDE}x{PATHFINDER_SIDE})"),
    ]
    positive = float(labels.mean()) if len(labels) else 0.0
    out.append(Stat("label balance", "ok" if abs(positive - 0.5) < 0.02 or len(labels) < 100 else "warn",
                    f"{100 * positive:.2f}% connected (release: balanced)"))
    chunk = 8192  # the cache may be memory-mapped: sum in blocks
    total = sum(float(images[i:i + chunk].sum(dtype=np.float64)) for i in range(0, len(images), chunk))
    ink = sum(int((images[i:i + chunk] > 0).sum()) for i in range(0, len(images), chunk))
    n_pix = max(images.size, 1)
    out.append(Stat("pixel intensity", "ok",
                    f"mean {total / n_pix:.2f} of 255, {100 * ink / n_pix:.1f}% of pixels non-zero"))
    for k, name in ((1, "connected"), (0, "not connected")):
        rows = np.flatnonzero(labels == k)[:2000]
        if len(rows):
            out.append(Stat(f"intensity, {name}", "ok", f"mean {images[np.sort(rows)].mean():.2f} (first {len(rows)} images)"))
    return out


STATS = {"listops": listops_stats, "pathfinder": pathfinder_stats}
