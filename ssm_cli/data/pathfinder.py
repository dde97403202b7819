"""LRA Pathfinder (32x32, L = 1024) and Path-X (128x128, L = 16384).

Raw layout (the LRA release, or ``ssm data generate pathfinder``):
``data_dir/lra/pathfinder{R}/curv_contour_length_14/{imgs/<k>/sample_<i>.png, metadata/<k>.npy}``.
A metadata file is text despite its name: one line per image, space-separated, field 0 the image
folder (``imgs/<k>``), field 1 the file name, field 3 the label (0/1); genuine ``np.save`` string
arrays with the same columns are read as well.

All images are decoded once into a ``(N, R*R) uint8`` array cached next to the raw data (opened
memory-mapped, so Path-X's 3.3 GB need not fit in RAM), then split 80/10/10 by a fixed-seed
permutation. Items: ``x: (L, 1) float32`` normalised to [-1, 1] (``(v / 255 - 0.5) / 0.5``, as the
reference), or with ``tokenize=true`` ``x: (L,) int64`` grey level + 1 (1..256, vocab 257, 0 kept
for padding); ``y: ()`` int64.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ssm_cli.data.base import DatasetBundle, DataSpec
from ssm_cli.data.cache import cached_arrays, fingerprint
from ssm_cli.data.lra import ensure_lra, take_options
from ssm_cli.errors import DataFileError, UserError

PROCESSING_VERSION = 1
CONTOUR_FOLDER = "curv_contour_length_14"
RESOLUTIONS = (32, 64, 128, 256)


class PixelImages(Dataset):
    """Rows of a ``(N, L) uint8`` image array picked by ``index``, as floats or tokens."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, index: np.ndarray, tokenize: bool):
        self.images, self.labels, self.index, self.tokenize = images, labels, index, tokenize

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        j = int(self.index[i])
        row = np.asarray(self.images[j])  # (L,) uint8
        if self.tokenize:
            x = torch.from_numpy(row.astype(np.int64) + 1)  # (L,)
        else:
            x = torch.from_numpy((row.astype(np.float32) / 127.5 - 1.0)[:, None])  # (L, 1)
        return x, torch.tensor(int(self.labels[j]), dtype=torch.int64)


def read_metadata(path: Path) -> list[tuple[str, str, int]]:
    """Rows ``(image folder, file name, label)`` of one metadata file; bad rows are a UserError."""
    try:
        raw = path.read_bytes()
        if raw.startswith(b"\x93NUMPY"):
            rows = [list(map(str, r)) for r in np.load(path, allow_pickle=False)]
        else:
            rows = [line.split() for line in raw.decode("utf-8").splitlines() if line.strip()]
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DataFileError(path, f"cannot read Pathfinder metadata file {path}: {e}") from e
    out = []
    for n, r in enumerate(rows, start=1):
        if len(r) < 4 or r[3] not in ("0", "1"):
            raise UserError(
                f"corrupt Pathfinder metadata file {path}, row {n}: expected space-separated"
                " 'imgs/<k> sample_<i>.png <i> <label 0|1> ...'"
            )
        out.append((r[0], r[1], int(r[3])))
    return out


def _metadata_files(root: Path) -> list[Path]:
    files = list((root / "metadata").glob("*.npy"))
    return sorted(files, key=lambda f: (0, int(f.stem), "") if f.stem.isdigit() else (1, 0, f.stem))


def decode_images(root: Path, rows: list[tuple[str, str, int]], resolution: int) -> np.ndarray:
    """``(N, resolution**2) uint8`` grey levels; an unreadable or mis-sized PNG is a UserError."""
    images = np.empty((len(rows), resolution * resolution), dtype=np.uint8)
    for i, (folder, name, _) in enumerate(rows):
        f = root / folder / name
        try:
            with Image.open(f) as im:
                a = np.asarray(im.convert("L"))
        except (OSError, ValueError, SyntaxError) as e:  # PIL raises these for missing/truncated files
            raise DataFileError(f, f"cannot read Pathfinder image {f} (missing, truncated or corrupt): {e}") from e
        if a.shape != (resolution, resolution):
            raise DataFileError(f, f"Pathfinder image {f} is {a.shape[1]}x{a.shape[0]}, expected {resolution}x{resolution}")
        images[i] = a.reshape(-1)
    return images


def _load(data_dir: Path, name: str, resolution: int, o: dict) -> DatasetBundle:
    data_dir = Path(data_dir)
    root = data_dir / "lra" / f"pathfinder{resolution}" / CONTOUR_FOLDER
    size_flag = "" if resolution == 32 else f" --size {resolution}"
    ensure_lra(
        data_dir, root / "metadata",
        f"pathfinder{resolution}/{CONTOUR_FOLDER}/{{imgs/<k>/sample_<i>.png, metadata/<k>.npy}}",
        o["download"], f"ssm data generate pathfinder{size_flag}",
    )
    meta = _metadata_files(root)
    if not meta:
        raise UserError(f"no metadata files {root}/metadata/<k>.npy; regenerate or re-download the data")
    rows = [r for f in meta for r in read_metadata(f)]
    if not rows:
        raise UserError(f"the metadata files in {root}/metadata list no images")

    def build() -> dict[str, np.ndarray]:
        return {
            "images": decode_images(root, rows, resolution),
            "labels": np.asarray([label for _, _, label in rows], dtype=np.int64),
        }

    images_files = [root / folder / fname for folder, fname, _ in rows]
    try:
        key = {"version": PROCESSING_VERSION, "resolution": resolution, "files": fingerprint(meta + images_files)}
    except FileNotFoundError as e:
        raise UserError(f"Pathfinder image listed in the metadata is missing: {e.filename}") from e
    a = cached_arrays(root, "images", key, build)  # one cache per resolution folder

    n = len(rows)
    n_val, n_test = int(o["val_split"] * n), int(o["test_split"] * n)
    perm = np.random.default_rng(o["split_seed"]).permutation(n)
    parts = {"train": perm[: n - n_val - n_test], "val": perm[n - n_val - n_test : n - n_test], "test": perm[n - n_test :]}
    sets = {s: PixelImages(a["images"], a["labels"], idx, o["tokenize"]) for s, idx in parts.items()}
    if o["tokenize"]:
        spec = DataSpec(name, resolution * resolution, 1, 2, input="tokens", vocab_size=257)
    else:
        spec = DataSpec(name, resolution * resolution, 1, 2)
    return DatasetBundle(spec, sets["train"], sets["val"], sets["test"])


_DEFAULTS = {"tokenize": False, "split_seed": 42, "val_split": 0.1, "test_split": 0.1, "download": True}


def _options(name: str, options: dict, defaults: dict) -> dict:
    o = take_options(name, options, defaults)
    for k in ("val_split", "test_split"):
        if not isinstance(o[k], (int, float)) or not 0 <= o[k] < 0.5:
            raise UserError(f"option {k} of dataset {name} must be a fraction in [0, 0.5), got {o[k]!r}")
    return o


def load_pathfinder(data_dir: Path, **options) -> DatasetBundle:
    """LRA Pathfinder. Options: ``resolution`` (32; also 64, 128, 256 of the release),
    ``tokenize`` (False), ``split_seed`` (42), ``val_split`` (0.1), ``test_split`` (0.1),
    ``download`` (True)."""
    o = _options("pathfinder", options, {"resolution": 32, **_DEFAULTS})
    if o["resolution"] not in RESOLUTIONS:
        raise UserError(f"unknown resolution {o['resolution']!r} for dataset pathfinder; valid: {', '.join(map(str, RESOLUTIONS))}")
    return _load(data_dir, "pathfinder" if o["resolution"] == 32 else f"pathfinder{o['resolution']}", o["resolution"], o)


def load_pathx(data_dir: Path, **options) -> DatasetBundle:
    """LRA Path-X (Pathfinder at 128x128, L = 16384). Options: ``tokenize`` (False),
    ``split_seed`` (42), ``val_split`` (0.1), ``test_split`` (0.1), ``download`` (True)."""
    return _load(data_dir, "pathx", 128, _options("pathx", options, dict(_DEFAULTS)))
