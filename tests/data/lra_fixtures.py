"""Writers of small LRA datasets in the real on-disk formats (tsv files, aclImdb text files,
Pathfinder PNGs + metadata), for the loader tests. Each returns what it wrote, so tests can
compare the loaded items with the raw content."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

# (source, target) pairs in the release format, with hand-checked values
LISTOPS_EXAMPLES = [
    ("( ( ( [MAX 4 ) 3 ) ] )", 4),
    ("( ( ( ( [MED 1 ) 2 ) 7 ) ] )", 2),
    ("( ( ( ( ( [SM 9 ) 8 ) 7 ) 6 ) ] )", 0),
    ("( ( ( [MIN ( ( ( [MAX 5 ) 9 ) ] ) ) 6 ) ] )", 6),
    ("( ( ( ( ( [MED 0 ) 2 ) 5 ) 9 ) ] )", 3),
    ("7", 7),
]


def write_listops(data_dir: Path, counts=(6, 3, 3)) -> dict[str, list[tuple[str, int]]]:
    """``data_dir/lra/listops-1000/basic_{train,val,test}.tsv`` cycling through the examples."""
    folder = Path(data_dir) / "lra" / "listops-1000"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in zip(("train", "val", "test"), counts):
        rows = [LISTOPS_EXAMPLES[i % len(LISTOPS_EXAMPLES)] for i in range(n)]
        write_tsv(folder / f"basic_{split}.tsv", [("Source", "Target"), *rows])
        out[split] = rows
    return out


def write_tsv(path: Path, rows) -> None:
    """Tab-separated, csv-module quoting and ``\\r\\n`` line ends, as the LRA scripts write."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter="\t").writerows(rows)


def write_imdb(data_dir: Path, per_class: int = 3, long_len: int = 5000) -> dict[str, list[tuple[bytes, int]]]:
    """``data_dir/aclImdb/{train,test}/{pos,neg}/<i>_<rating>.txt``; one review of each split is
    ``long_len`` bytes (for truncation), one holds non-ASCII text (UTF-8 bytes)."""
    root = Path(data_dir) / "aclImdb"
    out: dict[str, list[tuple[bytes, int]]] = {}
    for split in ("train", "test"):
        items = []
        for label, cls in enumerate(("neg", "pos")):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                text = f"{split} {cls} review {i}. Caf\u00e9 was {'great' if label else 'bad'}!<br />"
                if i == 0 and label == 1:
                    text = (text * (long_len // len(text) + 1))[:long_len]
                data = text.encode("utf-8")
                (root / split / cls / f"{i}_{7 if label else 2}.txt").write_bytes(data)
                items.append((f"{i}_{7 if label else 2}.txt", data, label))
        # the loader reads neg then pos, files sorted by name
        items.sort(key=lambda t: (t[2], t[0]))
        out[split] = [(d, y) for _, d, y in items]
    return out


def write_aan(data_dir: Path, counts=(4, 2, 2), long_len: int = 4500) -> dict[str, list[tuple[bytes, bytes, int]]]:
    """``data_dir/lra/tsv_data/new_aan_pairs.{train,eval,test}.tsv``: no header, columns
    label (written as ``1.0`` / ``0.0``), id1, id2, text1, text2. As in the release, text1 is a
    Python bytes literal (``b'...'``, escapes included); text2 is plain text."""
    folder = Path(data_dir) / "lra" / "tsv_data"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, file_split, n in zip(("train", "val", "test"), ("train", "eval", "test"), counts):
        rows, items = [], []
        for i in range(n):
            label = i % 2
            t1 = f"Paper {split}-{i} on attention. R\u00e9sum\u00e9 with a \"quote\"."
            t2 = f"Cited work {i}: state space models." * (long_len // 30 if i == 0 else 1)
            rows.append((f"{label}.0", f"P{i:02d}-1001", f"P{i:02d}-2002", repr(t1.encode() + b"\n"), t2))
            t1 += "\n"
            items.append((t1.encode(), t2.encode(), label))
        write_tsv(folder / f"new_aan_pairs.{file_split}.tsv", rows)
        out[split] = items
    return out


def write_pathfinder(
    data_dir: Path, n: int = 20, resolution: int = 32, per_folder: int = 8, npy_metadata: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``data_dir/lra/pathfinder{R}/curv_contour_length_14/{imgs/<k>/sample_<i>.png, metadata/<k>.npy}``.

    Image j is a deterministic pattern with ``image[0, 0] == j`` (to identify it after the split).
    Metadata rows are text lines (as in the release) or, with ``npy_metadata``, ``np.save`` string
    arrays. Returns ``(images (n, R*R) uint8, labels (n,))`` in metadata order.
    """
    root = Path(data_dir) / "lra" / f"pathfinder{resolution}" / "curv_contour_length_14"
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, resolution, resolution), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n) % 256
    labels = np.arange(n) % 2
    for k in range((n + per_folder - 1) // per_folder):
        (root / "imgs" / str(k)).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(per_folder):
            j = k * per_folder + i
            if j >= n:
                break
            Image.fromarray(images[j], mode="L").save(root / "imgs" / str(k) / f"sample_{i}.png")
            rows.append([f"imgs/{k}", f"sample_{i}.png", str(i), str(labels[j]), "1", "14", "4", "2", "0.5", "1", "1"])
        meta = root / "metadata" / f"{k}.npy"
        if npy_metadata:
            with open(meta, "wb") as f:
                np.save(f, np.array(rows))
        else:
            meta.write_text("".join(" ".join(r) + "\n" for r in rows))
    return images.reshape(n, -1), labels


def pathfinder_root(data_dir: Path, resolution: int = 32) -> Path:
    return Path(data_dir) / "lra" / f"pathfinder{resolution}" / "curv_contour_length_14"
