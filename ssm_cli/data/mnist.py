"""MNIST as sequences: ``smnist`` (pixels in raster order, L=784) and ``psmnist`` (a fixed permutation).

Source: the four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), gzipped (``.gz``) or not, directly in
``<data_dir>/mnist/`` or in torchvision's ``<data_dir>/mnist/MNIST/raw/``; downloaded into
``<data_dir>/mnist/`` when missing and ``download`` is true.

Split: the 60k training images give train/val by ``val_split`` (default 0.1, i.e. 54k/6k, as the
S4 reference code does), seeded by ``split_seed``; the 10k test images are the test set.
Items: x (784, 1) float32 in [0, 1]; y in 0..9.

Options: ``val_split=0.1``, ``split_seed=42``, ``download=True``; ``psmnist`` also
``permutation="random"`` (or ``"bitreversal"``, the reference code's choice) and
``permutation_seed=92916`` (seed of the random permutation).
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ssm_cli.data.arrays import ArrayDataset, ToSequence, train_val_indices
from ssm_cli.data.base import DatasetBundle, DataSpec
from ssm_cli.data.cache import cached_arrays, fingerprint
from ssm_cli.data.download import fetch
from ssm_cli.data.paths import check_options, missing_data
from ssm_cli.errors import DataFileError, UserError, check_choice

SOURCE = "mnist"
FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
MD5 = {  # of the .gz files
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
PROCESSING_VERSION = 1

LAYOUT = """\
mnist/train-images-idx3-ubyte[.gz]  mnist/train-labels-idx1-ubyte[.gz]
mnist/t10k-images-idx3-ubyte[.gz]   mnist/t10k-labels-idx1-ubyte[.gz]
(or the same four files in mnist/MNIST/raw/, torchvision's layout)"""
REMEDY = f"""\
ssm data prepare smnist   (downloads the four .gz files from {MIRRORS[0]})
or copy the four IDX files (gzipped or not) into <data_dir>/mnist/"""

COMMON_OPTIONS = {"val_split": 0.1, "split_seed": 42, "download": True}
PERMUTATIONS = ("random", "bitreversal")


def load_smnist(data_dir: Path, **options) -> DatasetBundle:
    """Sequential MNIST: x (784, 1) float32 in [0, 1], raster order."""
    check_options("smnist", options, COMMON_OPTIONS)
    return _bundle("smnist", data_dir, {**COMMON_OPTIONS, **options}, order=None)


def load_psmnist(data_dir: Path, **options) -> DatasetBundle:
    """Permuted sequential MNIST: every sequence reordered by one fixed permutation of the 784 pixels."""
    valid = {**COMMON_OPTIONS, "permutation": "random", "permutation_seed": 92916}
    check_options("psmnist", options, valid)
    opts = {**valid, **options}
    check_choice("permutation", opts["permutation"], PERMUTATIONS)
    return _bundle("psmnist", data_dir, opts, order=pixel_permutation(opts["permutation"], opts["permutation_seed"]))


def pixel_permutation(kind: str, seed: int, n: int = 784) -> np.ndarray:
    """The fixed pixel order of psMNIST: a seeded random permutation, or the bit-reversal order
    (indices sorted by their reversed binary digits, values >= n dropped)."""
    if kind == "random":
        return np.random.RandomState(seed).permutation(n)
    bits = int(np.ceil(np.log2(n)))
    reversed_ = [int(format(i, f"0{bits}b")[::-1], 2) for i in range(1 << bits)]
    return np.array([r for r in reversed_ if r < n])


def _bundle(name: str, data_dir: Path, opts: dict, order) -> DatasetBundle:
    raw = load_arrays(data_dir, download=opts["download"], dataset=name)
    transform = ToSequence(1, scale=1 / 255, order=order)
    train_idx, val_idx = train_val_indices(len(raw["train_x"]), opts["val_split"], opts["split_seed"])
    return DatasetBundle(
        spec=DataSpec(name, seq_len=784, d_input=1, d_output=10),
        train=ArrayDataset(raw["train_x"], raw["train_y"], train_idx, transform),
        val=ArrayDataset(raw["train_x"], raw["train_y"], val_idx, transform),
        test=ArrayDataset(raw["test_x"], raw["test_y"], None, transform),
    )


def locate(data_dir: Path) -> dict[str, Path] | None:
    """The four IDX files (plain preferred over .gz) in the first folder that has all four, else None."""
    for folder in (Path(data_dir) / SOURCE, Path(data_dir) / SOURCE / "MNIST" / "raw"):
        found = {}
        for key, name in FILES.items():
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(FILES):
            return found
    return None


def load_arrays(data_dir: Path, download: bool = True, dataset: str = "smnist") -> dict[str, np.ndarray]:
    """``train_x`` (60000, 28, 28) uint8, ``train_y`` (60000,) int64, ``test_x``, ``test_y`` (cached)."""
    files = locate(data_dir)
    if files is None and download:
        prepare(data_dir)
        files = locate(data_dir)
    if files is None:
        looked = [Path(data_dir) / SOURCE, Path(data_dir) / SOURCE / "MNIST" / "raw"]
        raise missing_data(dataset, looked, LAYOUT, REMEDY)
    key = {"version": PROCESSING_VERSION, "files": fingerprint(files.values())}

    def build() -> dict[str, np.ndarray]:
        arrays = {key: read_idx(path) for key, path in files.items()}
        for split in ("train", "test"):
            if len(arrays[f"{split}_x"]) != len(arrays[f"{split}_y"]):
                raise UserError(f"MNIST {split}: {len(arrays[f'{split}_x'])} images but {len(arrays[f'{split}_y'])} labels ({files[f'{split}_x']}, {files[f'{split}_y']})")
            arrays[f"{split}_y"] = arrays[f"{split}_y"].astype(np.int64)
        return arrays

    return cached_arrays(Path(data_dir) / SOURCE, "mnist", key, build)


def prepare(data_dir: Path) -> Path:
    """Download the four gzipped IDX files into ``<data_dir>/mnist/`` (trying each mirror)."""
    folder = Path(data_dir) / SOURCE
    for name, md5 in MD5.items():
        errors = []
        for mirror in MIRRORS:
            try:
                fetch(mirror + f"{name}.gz", folder / f"{name}.gz", checksum=("md5", md5))
                break
            except UserError as err:
                errors.append(str(err).splitlines()[0])
        else:
            raise UserError("\n".join(errors) + f"\nWithout network: copy the four MNIST IDX files into {folder}/")
    return folder


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not) -> uint8 array of the shape its header states."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataFileError(path, f"corrupt MNIST file {path} ({err}); delete it and run `ssm data prepare smnist`") from None
    if len(data) < 4:
        raise DataFileError(path, f"corrupt MNIST file {path}: {len(data)} bytes, shorter than an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 3:
        raise DataFileError(path, f"{path} is not an IDX file of unsigned bytes (magic {data[:4].hex()})")
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}i", data[4:header])
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataFileError(path, f"truncated or corrupt MNIST file {path}: {len(data)} bytes, its header {shape} implies {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
