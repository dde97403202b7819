"""Writers of tiny datasets in the real release formats, for tests and smoke runs.

Each ``write_*`` function creates the source folder the loader expects under ``root`` and returns
``root`` (the ``data_dir`` to pass to the loader). Contents are random but seeded, and labels are
spread over the classes, so every loader can be exercised end to end without downloads.
"""
from __future__ import annotations

import gzip
import io
import pickle
import struct
import wave
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SC10_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


def write_cifar_pickles(root: Path, n_train_per_batch: int = 20, n_test: int = 20, seed: int = 0) -> Path:
    """``root/cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch}`` with the real dict keys."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_train_per_batch
        batch = {
            b"batch_label": f"fixture {name}".encode(),
            b"labels": [int(v) for v in np.arange(n) % 10],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CIFAR_CLASSES]}, protocol=2))
    return Path(root)


def cifar_image(rng: np.random.Generator) -> np.ndarray:
    """A smooth random 32x32 RGB image (survives JPEG better than noise)."""
    base = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(base).resize((32, 32), Image.BILINEAR))


def write_cifar_folder(root: Path, n_train_per_class: int = 6, n_test_per_class: int = 2, fmt: str = "png", seed: int = 0) -> Path:
    """``root/cifar10/{train,test}/<class>/<i>.<fmt>``, 32x32 RGB images."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train_per_class), ("test", n_test_per_class)):
        for cls in CIFAR_CLASSES:
            d = Path(root) / "cifar10" / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(cifar_image(rng)).save(d / f"{i}.{fmt}")
    return Path(root)


def write_cifar_jpeg_pack(path: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> Path:
    """A tiny ``cifar10_jpeg.npz`` in the shared pack's layout: prefix + blobs + offsets + labels."""
    rng = np.random.default_rng(seed)
    out = {}
    encoded = {}
    for split, n in (("train", n_train), ("test", n_test)):
        jpegs = []
        for _ in range(n):
            buf = io.BytesIO()
            Image.fromarray(cifar_image(rng)).save(buf, format="JPEG", quality=75)
            jpegs.append(buf.getvalue())
        encoded[split] = jpegs
    every = encoded["train"] + encoded["test"]
    k = 0
    while all(len(j) > k and j[k] == every[0][k] for j in every):
        k += 1
    out["prefix"] = np.frombuffer(every[0][:k], dtype=np.uint8)
    for split, jpegs in encoded.items():
        tails = [j[k:] for j in jpegs]
        out[f"{split}_blob"] = np.frombuffer(b"".join(tails), dtype=np.uint8)
        out[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(t) for t in tails])]).astype(np.int64)
        out[f"{split}_labels"] = (np.arange(len(jpegs)) % 10).astype(np.uint8)
    np.savez(path, **out)
    return Path(path)


def _idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x0800 + array.ndim  # 0x08: unsigned byte data
    return struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape) + array.astype(np.uint8).tobytes()


def write_mnist_idx(root: Path, n_train: int = 60, n_test: int = 20, gz: bool = True, layout: str = "flat", seed: int = 0) -> Path:
    """The four MNIST IDX files, gzipped or not, in ``root/mnist/`` (layout "flat") or
    ``root/mnist/MNIST/raw/`` (layout "torchvision")."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "mnist" / ("MNIST/raw" if layout == "torchvision" else "")
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        files = {
            f"{prefix}-images-idx3-ubyte": rng.integers(0, 256, size=(n, 28, 28)),
            f"{prefix}-labels-idx1-ubyte": np.arange(n) % 10,
        }
        for name, array in files.items():
            data = _idx_bytes(np.asarray(array))
            if gz:
                with gzip.open(folder / f"{name}.gz", "wb") as f:
                    f.write(data)
            else:
                (folder / name).write_bytes(data)
    return Path(root)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    """16-bit PCM mono WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def write_speech_commands(
    root: Path, words=SC10_WORDS, n_per_word: int = 10, version: str = "v0.02", length: int = 16000, seed: int = 0
) -> Path:
    """``root/speech_commands/speech_commands_<version>/<word>/<speaker>_nohash_<k>.wav`` plus the
    official ``validation_list.txt`` / ``testing_list.txt`` (every 5th file each) and a
    ``_background_noise_/`` folder. Every third clip is shorter than ``length`` (to test padding)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "speech_commands" / f"speech_commands_{version}"
    val, test = [], []
    for word in words:
        for i in range(n_per_word):
            rel = f"{word}/{i:08x}_nohash_{i % 2}.wav"
            n = length if i % 3 else length // 2
            write_wav(folder / rel, rng.integers(-3000, 3000, size=n))
            if i % 5 == 1:
                val.append(rel)
            elif i % 5 == 2:
                test.append(rel)
    (folder / "validation_list.txt").write_text("".join(f"{r}\n" for r in val))
    (folder / "testing_list.txt").write_text("".join(f"{r}\n" for r in test))
    write_wav(folder / "_background_noise_" / "white_noise.wav", rng.integers(-100, 100, size=2 * length))
    (folder / "_background_noise_" / "README.md").write_text("noise clips\n")
    return Path(root)


def write_bidmc_ts(
    root: Path, n_train: int = 30, n_test: int = 10, length: int = 4000, channels: int = 2,
    targets=("HR", "RR", "SpO2"), missing: bool = False, seed: int = 0,
) -> Path:
    """``root/bidmc/BIDMC32<T>/BIDMC32<T>_{TRAIN,TEST}.ts`` in the Monash .ts format: a header of
    ``@`` tags, then one case per line, channels separated by ``:``, the target last."""
    rng = np.random.default_rng(seed)
    for target in targets:
        folder = Path(root) / "bidmc" / f"BIDMC32{target}"
        folder.mkdir(parents=True, exist_ok=True)
        for split, n in (("TRAIN", n_train), ("TEST", n_test)):
            lines = [
                "#Fixture in the format of the Monash time series extrinsic regression archive",
                f"@problemName BIDMC32{target}",
                "@timeStamps false",
                f"@missing {'true' if missing else 'false'}",
                "@univariate false",
                f"@dimensions {channels}",
                "@equalLength true",
                f"@seriesLength {length}",
                "@targetlabel true",
                "@data",
            ]
            for i in range(n):
                series = rng.normal(size=(channels, length)).round(4)
                cells = [",".join(f"{v:g}" for v in ch) for ch in series]
                if missing and i == 0:
                    cells[0] = "?," + cells[0].split(",", 1)[1]
                lines.append(":".join(cells) + f":{60 + i % 40:.2f}")
            (folder / f"BIDMC32{target}_{split}.ts").write_text("\n".join(lines) + "\n")
    return Path(root)
