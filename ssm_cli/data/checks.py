"""What each dataset should look like on disk and once loaded: used by ``ssm data list|where|verify``.

Sizes are those of the full releases with the loaders' default options (docs/papers.md §6); a fixture or a
non-default split reports a mismatch as a warning, never as a failure.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ssm_cli.data.base import DatasetBundle
from ssm_cli.data.registry import DATASETS


@dataclass(frozen=True)
class Expected:
    """The known shape of a dataset. ``paths`` are relative to data_dir; the first one is primary."""

    paths: tuple[str, ...]
    layout: str
    obtain: str
    sizes: tuple[int, int, int] | None = None  # train, val, test with default options
    seq_len: int | None = None
    d_input: int | None = None
    classes: int | None = None  # None: regression
    notes: str = ""
    generator: str | None = None  # `ssm data generate <generator>` makes it


CIFAR_LAYOUT = "cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch}  or  cifar10/{train,test}/<class>/*.png|jpg"
CIFAR_OBTAIN = "ssm data prepare scifar  (downloads the python pickles)\nor python scripts/materialize_cifar.py /work/shared/data/cifar10_jpeg.npz --out <data_dir>"
MNIST_LAYOUT = "mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]  (or mnist/MNIST/raw/...)"
SC_LAYOUT = "speech_commands/speech_commands_v0.02/<word>/<speaker>_nohash_<k>.wav + validation_list.txt, testing_list.txt"
LRA_OBTAIN = "the LRA release (https://storage.googleapis.com/long-range-arena/lra_release.gz) unpacked into <data_dir>/lra/"

EXPECTED: dict[str, Expected] = {
    "synthetic": Expected((), "none: generated in-process", "nothing to do", classes=10, seq_len=1024),
    "scifar": Expected(("cifar10/cifar-10-batches-py", "cifar10"), CIFAR_LAYOUT, CIFAR_OBTAIN, (45000, 5000, 10000), 1024, 3, 10),
    "lra_image": Expected(("cifar10/cifar-10-batches-py", "cifar10"), CIFAR_LAYOUT, CIFAR_OBTAIN, (45000, 5000, 10000), 1024, 1, 10),
    "smnist": Expected(("mnist",), MNIST_LAYOUT, "ssm data prepare smnist", (54000, 6000, 10000), 784, 1, 10,
                       notes="val = 10% of the 60k training images (val_split=0.1)"),
    "psmnist": Expected(("mnist",), MNIST_LAYOUT, "ssm data prepare psmnist", (54000, 6000, 10000), 784, 1, 10,
                        notes="val = 10% of the 60k training images (val_split=0.1)"),
    "sc35": Expected(("speech_commands/speech_commands_v0.02", "speech_commands"), SC_LAYOUT, "ssm data prepare sc35  (~2.4 GB download)", (84843, 9981, 11005), 16000, 1, 35),
    "sc10": Expected(("speech_commands/speech_commands_v0.02", "speech_commands"), SC_LAYOUT, "ssm data prepare sc10  (~2.4 GB download)", None, 16000, 1, 10,
                     notes="all clips of the ten words, split 70/15/15 per word"),
    "listops": Expected(("lra/listops-1000",), "lra/listops-1000/basic_{train,val,test}.tsv",
                        LRA_OBTAIN + "\nor ssm data generate listops", (96000, 2000, 2000), None, None, 10,
                        notes="expressions of 500-2000 tokens, padded to the option max_len", generator="listops"),
    "lra_text": Expected(("aclImdb",), "aclImdb/{train,test}/{pos,neg}/*.txt",
                         "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz unpacked into <data_dir>/",
                         (25000, 25000, 25000), 4096, None, 2, notes="test doubles as val"),
    "lra_retrieval": Expected(("lra/tsv_data",), "lra/tsv_data/new_aan_pairs.{train,eval,test}.tsv", LRA_OBTAIN,
                              None, 4000, None, 2),
    "pathfinder": Expected(("lra/pathfinder32/curv_contour_length_14",),
                           "lra/pathfinder32/curv_contour_length_14/{imgs/<k>/sample_<i>.png, metadata/<k>.npy}",
                           LRA_OBTAIN + "\nor ssm data generate pathfinder --size 32", None, 1024, 1, 2,
                           notes="80/10/10 random split of the images", generator="pathfinder"),
    "pathx": Expected(("lra/pathfinder128/curv_contour_length_14",),
                      "lra/pathfinder128/curv_contour_length_14/{imgs/<k>/sample_<i>.png, metadata/<k>.npy}",
                      LRA_OBTAIN + "\nor ssm data generate pathfinder --size 128", None, 16384, 1, 2,
                      notes="80/10/10 random split of the images", generator="pathfinder"),
    "bidmc": Expected(("bidmc/BIDMC32HR", "bidmc/BIDMC32RR", "bidmc/BIDMC32SpO2"),
                      "bidmc/BIDMC32{HR,RR,SpO2}/BIDMC32<T>_{TRAIN,TEST}.ts  (Monash .ts format)",
                      "ssm data prepare bidmc  (downloads from zenodo.org; option target=hr|rr|spo2)",
                      None, 4000, 2, None, notes="regression; val = 10% of the archive's TRAIN file"),
}


def locate(name: str, data_dir: Path) -> Path | None:
    """Where dataset ``name``'s raw data was found under ``data_dir``, or None (synthetic: None)."""
    data_dir = Path(data_dir)
    if name in ("scifar", "lra_image"):
        from ssm_cli.data import cifar

        found = cifar.locate(data_dir)
        return found[1] if found else None
    if name in ("smnist", "psmnist"):
        from ssm_cli.data import mnist

        files = mnist.locate(data_dir)
        return next(iter(files.values())).parent if files else None
    if name in ("sc35", "sc10"):
        from ssm_cli.data import speech_commands

        return speech_commands.locate(data_dir)
    if name == "bidmc":
        from ssm_cli.data import bidmc

        for target in bidmc.TARGETS:
            files = bidmc.locate(data_dir, target)
            if files:
                return files["train"].parent
        return None
    module = importlib.import_module(DATASETS[name].loader.split(":")[0]) if DATASETS[name].source else None
    hook = getattr(module, "locate", None)
    if callable(hook):  # a loader module may say itself where its data is
        try:
            found = hook(data_dir, name)
            return Path(found) if found else None
        except TypeError:
            pass
    for rel in EXPECTED[name].paths:
        if (data_dir / rel).exists():
            return data_dir / rel
    return None


def disk_size(path: Path) -> int:
    """Bytes of every file under ``path`` (0 when absent)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    total = 0
    for p in path.rglob("*") if path.is_dir() else ():
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            pass
    return total


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@dataclass
class Check:
    what: str
    status: str  # "ok" | "warn" | "fail"
    detail: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, what: str, ok: bool, detail: str, severity: str = "fail") -> None:
        self.checks.append(Check(what, "ok" if ok else severity, detail))

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)


def targets_of(ds, limit: int = 2000) -> tuple[np.ndarray, bool]:
    """All targets of a split when the dataset exposes them (``targets`` / ``labels``), else those of
    the first ``limit`` items. Returns (targets, complete)."""
    for attr in ("targets", "labels"):
        t = getattr(ds, attr, None)
        if t is not None and len(t) == len(ds):
            return np.asarray(t), True
    n = min(len(ds), limit)
    return np.stack([np.asarray(ds[i][1]) for i in range(n)]) if n else np.zeros(0), n == len(ds)


def verify(name: str, bundle: DatasetBundle) -> Report:
    """Compare a loaded dataset with its spec and with the known sizes of the release."""
    spec, exp, report = bundle.spec, EXPECTED.get(name), Report()
    splits = {"train": bundle.train, "val": bundle.val, "test": bundle.test}
    sizes = tuple(len(ds) for ds in splits.values())
    if exp and exp.sizes:
        report.add("split sizes", sizes == exp.sizes,
                   f"{'/'.join(map(str, sizes))}" + ("" if sizes == exp.sizes else f", the release has {'/'.join(map(str, exp.sizes))}"),
                   severity="warn")
    else:
        report.add("split sizes", all(sizes), "/".join(map(str, sizes)), severity="fail")
    if exp and exp.seq_len is not None:
        report.add("sequence length", spec.seq_len == exp.seq_len, f"{spec.seq_len} (expected {exp.seq_len})", severity="warn")
    if exp and exp.d_input is not None and spec.input == "float":
        report.add("input channels", spec.d_input == exp.d_input, f"{spec.d_input} (expected {exp.d_input})", severity="warn")
    if exp and exp.classes is not None:
        report.add("classes", spec.d_output == exp.classes, f"{spec.d_output} (expected {exp.classes})", severity="warn")
    views = {**splits, **{k: v[0] for k, v in bundle.extra_eval.items()}}
    for split, ds in views.items():
        if len(ds) == 0:
            report.add(f"{split} items", False, "empty split")
            continue
        x, y = ds[0]
        _check_item(report, split, spec, x, y, rate=bundle.extra_eval.get(split, (None, 1.0))[1])
    for split, ds in splits.items():
        if len(ds):
            _check_targets(report, split, spec, ds)
    from ssm_cli.data.stats import STATS  # the release's statistics (docs/lra-data.md)

    if name in STATS and not report.failed:
        report.checks += [Check(s.what, s.status, s.detail) for s in STATS[name](bundle)]
    return report


def _check_item(report: Report, split: str, spec, x: torch.Tensor, y: torch.Tensor, rate: float) -> None:
    L = int(round(spec.seq_len / rate))
    if spec.input == "float":
        want, dtype = (L, spec.d_input), torch.float32
    else:
        want, dtype = ((2, L) if spec.two_tower else (L,)), torch.int64
    ok = tuple(x.shape) == want and x.dtype == dtype
    report.add(f"{split} x", ok, f"{tuple(x.shape)} {str(x.dtype).replace('torch.', '')}" + ("" if ok else f", expected {want} {str(dtype).replace('torch.', '')}"))
    if spec.input == "float":
        report.add(f"{split} x finite", bool(torch.isfinite(x).all()), "no NaN/inf in the first item")
    else:
        lo, hi = int(x.min()), int(x.max())
        report.add(f"{split} token ids", 0 <= lo and hi < (spec.vocab_size or 0), f"{lo}..{hi} of vocab {spec.vocab_size}")
    if spec.task == "classification":
        report.add(f"{split} y", y.dtype == torch.int64 and y.dim() == 0, f"{tuple(y.shape)} {str(y.dtype).replace('torch.', '')}")
    else:
        report.add(f"{split} y", y.dtype == torch.float32 and tuple(y.shape) == (spec.d_output,), f"{tuple(y.shape)} {str(y.dtype).replace('torch.', '')}")


def _check_targets(report: Report, split: str, spec, ds) -> None:
    t, complete = targets_of(ds)
    scope = "all" if complete else f"first {len(t)}"
    if spec.task == "classification":
        labels = t.astype(np.int64).reshape(-1)
        ok = labels.min() >= 0 and labels.max() < spec.d_output
        present = len(np.unique(labels))
        report.add(f"{split} labels", bool(ok), f"{labels.min()}..{labels.max()} ({scope} items), {present} of {spec.d_output} classes present")
        if ok and present < spec.d_output:
            report.add(f"{split} classes present", False, f"{present} of {spec.d_output}", severity="warn")
    else:
        t = t.astype(np.float64)
        finite = bool(np.isfinite(t).all())
        report.add(f"{split} targets", finite, f"mean {np.nanmean(t):.3g}, std {np.nanstd(t):.3g}, range {np.nanmin(t):.3g}..{np.nanmax(t):.3g} ({scope})"
                   if t.size else "none")
