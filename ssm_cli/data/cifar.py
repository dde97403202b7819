"""CIFAR-10 as sequences: ``scifar`` (RGB, L=1024, 3 channels) and ``lra_image`` (grayscale, L=1024).

Sources, looked for under ``<data_dir>/cifar10/`` in this order:

1. torchvision's pickles ``cifar-10-batches-py/{data_batch_1..5, test_batch}`` (read here, through an
   unpickler that admits only numpy arrays, not through torchvision's MD5-checking class);
2. an image folder ``{train,test}/<class>/*.png|jpg`` with the standard class names (airplane ...
   truck), e.g. made by ``scripts/materialize_cifar.py`` from the JPEG pack.

When neither is there and ``download`` is true, the official pickles are downloaded. The decoded
images (uint8) are cached, and with them, once computed, the training images' channel statistics
and LRA Image's grayscale images (``cache.derived_array``); the 45k/5k train/val split
(``val_split`` of the 50k training images, seeded by ``split_seed``) and the normalisation are
applied per item (or, for data kept on the GPU, there: ``ArrayDataset.tensors``).

Options (both datasets): ``val_split=0.1`` (fraction or count), ``split_seed=42``,
``download=True``. ``lra_image`` also: ``tokenize=False`` (true: 8-bit grey levels as tokens
1..256, vocab 257, 0 kept for padding; false: floats normalised by the training mean/std).
"""
from __future__ import annotations

import os
import pickle
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from ssm_cli.data.arrays import ArrayDataset, ToSequence, ToTokens, train_val_indices, uint8_channel_stats
from ssm_cli.data.base import DatasetBundle, DataSpec
from ssm_cli.data.cache import cached_arrays, derived_array
from ssm_cli.data.download import extract, fetch, files_digest, remove, track
from ssm_cli.data.paths import check_options, missing_data
from ssm_cli.errors import DataFileError, UserError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SOURCE = "cifar10"
PICKLE_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
PROCESSING_VERSION = 1  # bump when the decoding below changes

LAYOUT = f"""\
either  cifar10/{PICKLE_DIR}/data_batch_1 ... data_batch_5, test_batch   (python pickles)
or      cifar10/train/<class>/*.png|jpg and cifar10/test/<class>/*.png|jpg   (32x32 images)
        classes: {', '.join(CLASSES)}"""
REMEDY = f"""\
ssm data prepare scifar   (downloads {URL})
or unpack that archive into <data_dir>/cifar10/
or python scripts/materialize_cifar.py PACK.npz --out <data_dir>   (image folder from the JPEG pack)"""

COMMON_OPTIONS = {"val_split": 0.1, "split_seed": 42, "download": True}


def locate(data_dir: Path) -> tuple[str, Path] | None:
    """``("pickles", dir)`` or ``("folder", dir)`` for the CIFAR-10 copy under ``data_dir``, else None."""
    root = Path(data_dir) / SOURCE
    if (root / PICKLE_DIR).is_dir():
        return "pickles", root / PICKLE_DIR
    if (root / "train").is_dir() and (root / "test").is_dir():
        return "folder", root
    return None


def load_scifar(data_dir: Path, **options) -> DatasetBundle:
    """sCIFAR: x (1024, 3) float32, pixels in raster order, each channel standardised; y in 0..9."""
    check_options("scifar", options, COMMON_OPTIONS)
    opts = {**COMMON_OPTIONS, **options}
    raw = load_images(data_dir, download=opts["download"])
    mean, std = channel_stats(raw, "train_x-channel_stats3-v1", raw["train_x"], 3)
    transform = ToSequence(3, scale=1 / 255, mean=mean, std=std)
    spec = DataSpec("scifar", seq_len=1024, d_input=3, d_output=10)
    return _bundle(spec, raw["train_x"], raw["train_y"], raw["test_x"], raw["test_y"], transform, opts)


def load_lra_image(data_dir: Path, **options) -> DatasetBundle:
    """LRA Image: grayscale CIFAR-10; x (1024, 1) float32 or, with ``tokenize``, (1024,) int64 ids."""
    valid = {**COMMON_OPTIONS, "tokenize": False}
    check_options("lra_image", options, valid)
    opts = {**valid, **options}
    raw = load_images(data_dir, download=opts["download"], dataset="lra_image")
    gray = {k: derived_array(raw, f"{k}-grayscale-v1", partial(grayscale, raw[k]), mmap=True) for k in ("train_x", "test_x")}
    train_x, test_x = gray["train_x"], gray["test_x"]
    if opts["tokenize"]:
        transform = ToTokens(offset=1)
        spec = DataSpec("lra_image", seq_len=1024, d_input=1, d_output=10, input="tokens", vocab_size=257)
    else:
        mean, std = channel_stats(raw, "train_x-grayscale-channel_stats1-v1", train_x, 1)
        transform = ToSequence(1, scale=1 / 255, mean=mean, std=std)
        spec = DataSpec("lra_image", seq_len=1024, d_input=1, d_output=10)
    return _bundle(spec, train_x, raw["train_y"], test_x, raw["test_y"], transform, opts)


def channel_stats(raw: dict[str, np.ndarray], name: str, images: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``uint8_channel_stats(images, channels)``, kept as ``name`` in the cache entry of ``raw``
    after the first load (a pass over 150 M pixels otherwise: half a second at every start)."""
    stats = derived_array(raw, name, lambda: np.stack(uint8_channel_stats(images, channels)))
    return stats[0], stats[1]


def grayscale(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) uint8 RGB -> (N, 32, 32) uint8 luma, the ITU-R 601 weights Pillow's "L" uses."""
    out = np.empty(images.shape[:-1], dtype=np.uint8)
    for start in range(0, len(images), 4096):  # chunks: the uint32 temporaries stay small
        rgb = np.asarray(images[start : start + 4096], dtype=np.uint32)
        out[start : start + 4096] = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    return out


def _bundle(spec, train_x, train_y, test_x, test_y, transform, opts) -> DatasetBundle:
    train_idx, val_idx = train_val_indices(len(train_x), opts["val_split"], opts["split_seed"])
    return DatasetBundle(
        spec=spec,
        train=ArrayDataset(train_x, train_y, train_idx, transform),
        val=ArrayDataset(train_x, train_y, val_idx, transform),
        test=ArrayDataset(test_x, test_y, None, transform),
    )


def load_images(data_dir: Path, download: bool = True, dataset: str = "scifar") -> dict[str, np.ndarray]:
    """Decoded CIFAR-10: ``train_x``/``test_x`` (N, 32, 32, 3) uint8, ``train_y``/``test_y`` (N,) int64."""
    found = locate(data_dir)
    if found is None and download:
        prepare(data_dir)
        found = locate(data_dir)
    if found is None:
        raise missing_data(dataset, [Path(data_dir) / SOURCE], LAYOUT, REMEDY)
    kind, path = found
    if kind == "pickles":
        files = [path / name for name in (*TRAIN_BATCHES, TEST_BATCH)]
        for f in files:
            if not f.is_file():
                raise UserError(f"CIFAR-10 batch file missing: {f}\nExpected layout:\n{LAYOUT}\nTo obtain it:\n{REMEDY}")
        build = partial(_read_pickles, files)
    else:
        listing = {split: _list_folder(path / split) for split in ("train", "test")}
        files = [f for split in listing.values() for f, _ in split]
        build = partial(_read_folder, listing)
    key = {"version": PROCESSING_VERSION, "kind": kind, "n_files": len(files), "files": files_digest(files)}
    return cached_arrays(Path(data_dir) / SOURCE, f"cifar10-{kind}", key, build)


def prepare(data_dir: Path) -> Path:
    """Download and unpack the official python pickles into ``<data_dir>/cifar10/``."""
    root = Path(data_dir) / SOURCE
    archive = fetch(URL, root / "cifar-10-python.tar.gz", checksum=("md5", MD5), offline_hint=f"Then unpack it into {root}/ (giving {root / PICKLE_DIR}/).")
    extract(archive, root)
    remove(archive)
    return root / PICKLE_DIR


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays, nothing else (a batch file is data, not code)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 pickle -> images (n, 32, 32, 3) uint8, labels (n,) int64."""
    try:
        with open(path, "rb") as f:
            batch = _ArraysOnly(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise DataFileError(path, f"corrupt CIFAR-10 batch file {path} ({type(err).__name__}: {err}); delete it and run `ssm data prepare scifar`") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataFileError(path, f"corrupt CIFAR-10 batch file {path}: data {data.shape}, {len(labels)} labels; expected (n, 3072) and n labels")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataFileError(path, f"corrupt CIFAR-10 batch file {path}: labels outside 0..9")
    # rows are planar: 1024 red, 1024 green, 1024 blue values, each in raster order
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _read_pickles(files: list[Path]) -> dict[str, np.ndarray]:
    train = [read_batch(f) for f in files[:-1]]
    test_x, test_y = read_batch(files[-1])
    return {
        "train_x": np.concatenate([x for x, _ in train]),
        "train_y": np.concatenate([y for _, y in train]),
        "test_x": test_x,
        "test_y": test_y,
    }


def _list_folder(split_dir: Path) -> list[tuple[str, int]]:
    """(image, label) pairs of one split folder, classes in the standard order, files sorted by name.

    Paths are strings, as ``str(split_dir / class / name)`` writes them (60,000 ``Path`` objects
    would cost a good part of a second at every load)."""
    extra = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and d.name not in CLASSES)
    if extra:
        raise UserError(f"unknown class folder(s) {', '.join(extra)} in {split_dir}; valid: {', '.join(CLASSES)}")
    items = []
    for label, name in enumerate(CLASSES):
        folder = split_dir / name
        if not folder.is_dir():
            continue
        prefix = f"{folder}/"
        items += [(prefix + f, label) for f in sorted(e.name for e in os.scandir(folder))
                  if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES]
    if not items:
        raise UserError(f"no images in {split_dir}\nExpected layout:\n{LAYOUT}")
    return items


def _read_folder(listing: dict[str, list[tuple[str, int]]]) -> dict[str, np.ndarray]:
    out = {}
    for split, items in listing.items():
        x = np.empty((len(items), 32, 32, 3), dtype=np.uint8)
        for i, (f, _) in enumerate(track(items, len(items), f"decode CIFAR-10 {split}")):
            try:
                with Image.open(f) as im:
                    pixels = np.asarray(im.convert("RGB"))
            except (OSError, SyntaxError, ValueError) as err:
                raise DataFileError(f, f"corrupt CIFAR-10 image {f} ({err})") from None
            if pixels.shape != (32, 32, 3):
                raise DataFileError(f, f"CIFAR-10 image {f} is {pixels.shape[1]}x{pixels.shape[0]}, expected 32x32")
            x[i] = pixels
        out[f"{split}_x"] = x
        out[f"{split}_y"] = np.array([label for _, label in items], dtype=np.int64)
    return out
