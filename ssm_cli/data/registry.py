"""Every dataset the runner knows, by the name used in ``dataset=<name>``.

Loaders are imported lazily ("module:function") so that a missing optional dependency of one
dataset never breaks another. A loader is called as ``fn(data_dir: Path, **options)`` and returns
a ``DatasetBundle``; it raises ``UserError`` naming the exact path, layout and remedy when the
data is missing or corrupt.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ssm_cli.errors import UserError
from ssm_cli.data.base import DatasetBundle


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    loader: str  # "module:function"
    source: str  # folder under data_dir holding the raw files ("" = generated in-process)
    summary: str


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("synthetic", "ssm_cli.data.synthetic:load", "", "built-in generated long-range task (no files, the default)"),
        DatasetInfo("scifar", "ssm_cli.data.cifar:load_scifar", "cifar10", "sequential CIFAR-10, RGB pixels in raster order, L=1024"),
        DatasetInfo("lra_image", "ssm_cli.data.cifar:load_lra_image", "cifar10", "LRA Image: grayscale CIFAR-10, L=1024"),
        DatasetInfo("smnist", "ssm_cli.data.mnist:load_smnist", "mnist", "sequential MNIST, L=784"),
        DatasetInfo("psmnist", "ssm_cli.data.mnist:load_psmnist", "mnist", "permuted sequential MNIST (fixed permutation), L=784"),
        DatasetInfo("sc35", "ssm_cli.data.speech_commands:load_sc35", "speech_commands", "Speech Commands v0.02, 35 words, raw 16 kHz, L=16000"),
        DatasetInfo("sc10", "ssm_cli.data.speech_commands:load_sc10", "speech_commands", "Speech Commands, 10 words, stratified 70/15/15, L=16000"),
        DatasetInfo("listops", "ssm_cli.data.lra:load_listops", "lra", "LRA ListOps, L<=2000, 10 classes"),
        DatasetInfo("lra_text", "ssm_cli.data.lra:load_text", "aclImdb", "LRA Text: IMDB bytes, L=4096, 2 classes"),
        DatasetInfo("lra_retrieval", "ssm_cli.data.lra:load_retrieval", "lra", "LRA Retrieval: AAN pairs, bytes, two-tower, L=4000"),
        DatasetInfo("pathfinder", "ssm_cli.data.pathfinder:load_pathfinder", "lra", "LRA Pathfinder 32x32, L=1024"),
        DatasetInfo("pathx", "ssm_cli.data.pathfinder:load_pathx", "lra", "LRA Path-X 128x128, L=16384"),
        DatasetInfo("bidmc", "ssm_cli.data.bidmc:load_bidmc", "bidmc", "BIDMC32 HR/RR/SpO2 regression, L=4000, RMSE"),
    ]
}


def load_dataset(name: str, data_dir: str | Path, **options) -> DatasetBundle:
    """Load dataset ``name`` from ``data_dir``; options are the dataset config's keys."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    module, fn = DATASETS[name].loader.split(":")
    return getattr(importlib.import_module(module), fn)(Path(data_dir), **options)
