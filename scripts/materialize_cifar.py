"""Materialise the CIFAR-10 JPEG pack (``cifar10_jpeg.npz``) as an image folder the ``scifar`` loader reads.

    python scripts/materialize_cifar.py /work/shared/data/cifar10_jpeg.npz --out data

writes ``<out>/cifar10/{train,test}/<class>/<i>.jpg``: image ``i`` of a split is
``prefix + blob[offsets[i]:offsets[i+1]]``, written byte for byte (no re-encoding, so no second
round of JPEG loss). Existing files are overwritten; nothing else in ``<out>`` is touched.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def materialize(pack: Path, out: Path) -> dict[str, int]:
    """Write every image of ``pack`` under ``out/cifar10/``; returns the count per split."""
    with np.load(pack) as z:
        missing = {"prefix", "train_blob", "train_offsets", "train_labels", "test_blob", "test_offsets", "test_labels"} - set(z.files)
        if missing:
            raise SystemExit(f"{pack} lacks {', '.join(sorted(missing))}: not a CIFAR-10 JPEG pack")
        prefix = z["prefix"].tobytes()
        counts = {}
        for split in ("train", "test"):
            blob, offsets, labels = z[f"{split}_blob"], z[f"{split}_offsets"], z[f"{split}_labels"]
            if len(offsets) != len(labels) + 1 or offsets[-1] != len(blob):
                raise SystemExit(f"{pack}: {split} offsets do not match its blob and labels")
            for cls in CLASSES:
                (out / "cifar10" / split / cls).mkdir(parents=True, exist_ok=True)
            for i, label in enumerate(labels):
                path = out / "cifar10" / split / CLASSES[int(label)] / f"{i}.jpg"
                path.write_bytes(prefix + blob[offsets[i] : offsets[i + 1]].tobytes())
            counts[split] = len(labels)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pack", type=Path, help="the .npz pack (e.g. /work/shared/data/cifar10_jpeg.npz)")
    parser.add_argument("--out", type=Path, default=Path("data"), help="data_dir to write cifar10/ into (default ./data)")
    args = parser.parse_args(argv)
    counts = materialize(args.pack, args.out)
    print(f"wrote {counts['train']} train and {counts['test']} test images under {args.out / 'cifar10'}")


if __name__ == "__main__":
    main()
