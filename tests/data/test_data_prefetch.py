"""Background loads (``ssm_cli.data.registry.prefetch``): the caller's ``load_dataset`` gets what
it would have loaded itself; downloads and cache builds stay in the caller; no global random state."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ssm_cli.data import load_dataset
from ssm_cli.data.cache import CACHE_FOLDER, NotPrefetchable
from ssm_cli.data.registry import _PREFETCHES, drop_prefetches, prefetch
from ssm_cli.errors import UserError
from tests.data.fixtures import write_cifar_folder, write_cifar_pickles


@pytest.fixture(autouse=True)
def no_leftovers():
    drop_prefetches()
    yield
    drop_prefetches()


def same_items(a, b) -> None:
    assert (len(a.train), len(a.val), len(a.test)) == (len(b.train), len(b.val), len(b.test))
    for x, y in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        for i in (0, len(x) - 1):
            assert torch.equal(x[i][0], y[i][0]) and torch.equal(x[i][1], y[i][1])


def test_load_takes_the_prefetched_bundle(tmp_path):
    root = write_cifar_pickles(tmp_path, n_train_per_batch=10, n_test=10)
    alone = load_dataset("scifar", root, val_split=5, download=False)  # builds the cache
    future = prefetch("scifar", root, val_split=5, download=False)
    bundle = load_dataset("scifar", root, val_split=5, download=False)
    assert bundle is future.result() and not _PREFETCHES  # taken once, not kept
    same_items(bundle, alone)
    other = prefetch("scifar", root, val_split=6, download=False)  # other options: not taken
    assert len(load_dataset("scifar", root, val_split=5, download=False).val) == 5
    assert len(other.result().val) == 6


def test_a_prefetch_builds_no_cache_the_caller_does(tmp_path):
    root = write_cifar_folder(tmp_path, n_train_per_class=1, n_test_per_class=1)
    future = prefetch("scifar", root, val_split=2, download=False)
    with pytest.raises(NotPrefetchable):
        future.result(timeout=60)
    assert not (root / "cifar10" / CACHE_FOLDER).exists() or not any((root / "cifar10" / CACHE_FOLDER).iterdir())
    bundle = load_dataset("scifar", root, val_split=2, download=False)  # loads (and caches) here
    assert len(bundle.train) + len(bundle.val) == 10
    assert any(p.name.startswith("cifar10-folder-") for p in (root / "cifar10" / CACHE_FOLDER).iterdir())


def test_a_prefetch_does_not_download(tmp_path):
    future = prefetch("scifar", tmp_path, download=True)
    with pytest.raises(NotPrefetchable, match="download"):
        future.result(timeout=60)
    assert not any(tmp_path.iterdir())


def test_a_failed_prefetch_fails_again_in_the_caller(tmp_path):
    prefetch("scifar", tmp_path, download=False)
    with pytest.raises(UserError, match="cifar10"):
        load_dataset("scifar", tmp_path, download=False)


@pytest.mark.parametrize("name", ["synthetic", "scifar"])
def test_loading_leaves_the_global_random_state_alone(tmp_path, name):
    """A background load may run while the run seeds itself: loaders use their own generators."""
    options = {"n_train": 16, "n_val": 8, "n_test": 8} if name == "synthetic" else {"val_split": 5, "download": False}
    root = write_cifar_pickles(tmp_path, n_train_per_batch=10, n_test=10)
    load_dataset(name, root, **options)  # (builds the cache)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    load_dataset(name, root, **options)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
