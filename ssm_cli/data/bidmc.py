"""BIDMC32 regression (``bidmc``): heart rate, respiratory rate or SpO2 from 32 s of PPG and ECG.

Source: the Monash/UEA/UCR time series extrinsic regression archive's ``BIDMC32HR``,
``BIDMC32RR`` and ``BIDMC32SpO2`` problems, two ``.ts`` files each (``BIDMC32<T>_TRAIN.ts``,
``BIDMC32<T>_TEST.ts``; 2 channels, 4000 steps at 125 Hz, one scalar target per case), looked for
in ``<data_dir>/bidmc/BIDMC32<T>/``, ``<data_dir>/bidmc/<T>/`` (the S4 reference's layout) and
``<data_dir>/bidmc/``; downloaded from Zenodo into the first when missing and ``download``.

The ``.ts`` format: ``#`` comment lines, ``@tag value`` header lines up to ``@data``, then one case
per line, the channels separated by ``:`` (values by ``,``, ``?`` = missing) and the target last.
Missing values are filled with the mean of their series channel.

Items: x (4000, 2) float32, each channel standardised with the training split's mean/std;
y (1,) float32, the target in its own units (bpm, breaths/min, %); metric RMSE.

Options: ``target="hr"`` (``hr`` | ``rr`` | ``spo2``), ``val_split=0.1`` (fraction or count of
the archive's TRAIN file), ``split_seed=42``, ``reshuffle=False`` (true: pool TRAIN and TEST and
split 70/15/15 at random, as the S4 reference code does), ``download=True``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ssm_cli.data.arrays import ArrayDataset, ToSequence, train_val_indices
from ssm_cli.data.base import DatasetBundle, DataSpec
from ssm_cli.data.cache import cached_arrays, fingerprint
from ssm_cli.data.download import fetch
from ssm_cli.data.paths import check_options, missing_data
from ssm_cli.errors import DataFileError, UserError, check_choice

SOURCE = "bidmc"
TARGETS = {"hr": "HR", "rr": "RR", "spo2": "SpO2"}
ZENODO_RECORDS = {"HR": 4001456, "RR": 4001463, "SpO2": 4001464}
PROCESSING_VERSION = 1
OPTIONS = {"target": "hr", "val_split": 0.1, "split_seed": 42, "reshuffle": False, "download": True}


def problem(target: str) -> str:
    return f"BIDMC32{TARGETS[target]}"


def layout(target: str) -> str:
    p = problem(target)
    return f"bidmc/{p}/{p}_TRAIN.ts and bidmc/{p}/{p}_TEST.ts   (Monash .ts format)"


def remedy(target: str) -> str:
    return f"ssm data prepare bidmc   (downloads {url(target, 'TRAIN')} and _TEST.ts)\nor copy both files into <data_dir>/bidmc/{problem(target)}/"


def url(target: str, split: str) -> str:
    name = problem(target)
    return f"https://zenodo.org/record/{ZENODO_RECORDS[TARGETS[target]]}/files/{name}_{split}.ts"


def candidates(data_dir: Path, target: str) -> list[Path]:
    root = Path(data_dir) / SOURCE
    return [root / problem(target), root / TARGETS[target], root]


def locate(data_dir: Path, target: str = "hr") -> dict[str, Path] | None:
    """``{"train": .., "test": ..}`` .ts paths from the first candidate folder holding both, else None."""
    for folder in candidates(data_dir, target):
        files = {s: folder / f"{problem(target)}_{s.upper()}.ts" for s in ("train", "test")}
        if all(f.is_file() for f in files.values()):
            return files
    return None


def load_bidmc(data_dir: Path, **options) -> DatasetBundle:
    check_options("bidmc", options, OPTIONS)
    opts = {**OPTIONS, **options}
    check_choice("target", opts["target"], TARGETS)
    arrays = load_arrays(data_dir, opts["target"], opts["download"])
    x = np.concatenate([arrays["train_x"], arrays["test_x"]])  # (N, L, C)
    y = np.concatenate([arrays["train_y"], arrays["test_y"]])[:, None].astype(np.float32)  # (N, 1)
    n_train = len(arrays["train_x"])
    if opts["reshuffle"]:
        perm = np.random.default_rng(opts["split_seed"]).permutation(len(x))
        a, b = int(round(0.7 * len(x))), int(round(0.85 * len(x)))
        rows = {"train": np.sort(perm[:a]), "val": np.sort(perm[a:b]), "test": np.sort(perm[b:])}
    else:
        train_idx, val_idx = train_val_indices(n_train, opts["val_split"], opts["split_seed"])
        rows = {"train": train_idx, "val": val_idx, "test": np.arange(n_train, len(x))}
    train_x = x[rows["train"]]
    mean, std = train_x.mean(axis=(0, 1)), np.maximum(train_x.std(axis=(0, 1)), 1e-6)
    channels = x.shape[2]
    transform = ToSequence(channels, mean=mean, std=std)
    spec = DataSpec("bidmc", seq_len=x.shape[1], d_input=channels, d_output=1, task="regression", metric="rmse")
    return DatasetBundle(spec=spec, **{split: ArrayDataset(x, y, idx, transform) for split, idx in rows.items()})


def load_arrays(data_dir: Path, target: str = "hr", download: bool = True) -> dict[str, np.ndarray]:
    """``train_x``/``test_x`` (N, L, C) float32 and ``train_y``/``test_y`` (N,) float32 of one problem (cached)."""
    files = locate(data_dir, target)
    if files is None and download:
        prepare(data_dir, target)
        files = locate(data_dir, target)
    if files is None:
        raise missing_data(f"bidmc (target={target})", candidates(data_dir, target), layout(target), remedy(target))

    def build() -> dict[str, np.ndarray]:
        out = {}
        for split, path in files.items():
            out[f"{split}_x"], out[f"{split}_y"] = read_ts(path)
        if out["train_x"].shape[1:] != out["test_x"].shape[1:]:
            raise UserError(f"{files['train']} and {files['test']} differ in shape: {out['train_x'].shape[1:]} vs {out['test_x'].shape[1:]}")
        return out

    key = {"version": PROCESSING_VERSION, "files": fingerprint(files.values())}
    return cached_arrays(files["train"].parent, f"bidmc-{target}", key, build)


def prepare(data_dir: Path, target: str = "hr") -> Path:
    """Download both .ts files of one problem into ``<data_dir>/bidmc/BIDMC32<T>/``."""
    folder = candidates(data_dir, target)[0]
    for split in ("TRAIN", "TEST"):
        fetch(url(target, split), folder / f"{problem(target)}_{split}.ts")
    return folder


def read_ts(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A regression ``.ts`` file of equal-length series -> x (N, L, C) float32, y (N,) float32."""
    series, targets = [], []
    in_data = False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if not in_data:
                    tag = line.lower().split()
                    if tag[0] == "@data":
                        in_data = True
                    elif tag[0] == "@timestamps" and tag[1:2] == ["true"]:
                        raise DataFileError(path, f"{path}: series with time stamps are not supported")
                    elif tag[0] == "@classlabel" and tag[1:2] == ["true"]:
                        raise DataFileError(path, f"{path} is a classification problem (@classLabel true), expected a regression target")
                    continue
                *channels, target = line.split(":")
                try:
                    case = np.stack([np.array(c.replace("?", "nan").split(","), dtype=np.float32) for c in channels])
                    targets.append(float(target))
                except ValueError as err:
                    raise DataFileError(path, f"corrupt .ts file {path}, line {lineno}: {err}") from None
                if series and case.shape != series[0].shape:
                    raise DataFileError(path, f"corrupt .ts file {path}, line {lineno}: {case.shape[0]} channels x {case.shape[1]} steps, the first case has {series[0].shape[0]} x {series[0].shape[1]}")
                series.append(case)
    except OSError as err:
        raise DataFileError(path, f"cannot read {path} ({err})") from None
    if not series:
        raise DataFileError(path, f"corrupt .ts file {path}: no cases after @data (truncated?)")
    x = np.stack(series).transpose(0, 2, 1)  # (N, C, L) -> (N, L, C)
    if np.isnan(x).any():
        fill = np.nanmean(x, axis=1, keepdims=True)  # per case and channel
        x = np.where(np.isnan(x), np.nan_to_num(fill), x)
    return np.ascontiguousarray(x, dtype=np.float32), np.asarray(targets, dtype=np.float32)
