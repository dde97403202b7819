"""Datasets: loaders for the real releases, generators, the built-in synthetic task."""
from ssm_cli.data.base import DataSpec, DatasetBundle
from ssm_cli.data.registry import DATASETS, DatasetInfo, load_dataset

__all__ = ["DataSpec", "DatasetBundle", "DATASETS", "DatasetInfo", "load_dataset"]
