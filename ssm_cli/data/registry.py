"""Every dataset the runner knows, by the name used in ``dataset=<name>``.

Loaders are imported lazily ("module:function") so that a missing optional dependency of one
dataset never breaks another. A loader is called as ``fn(data_dir: Path, **options)`` and returns
a ``DatasetBundle``; it raises ``UserError`` naming the exact path, layout and remedy when the
data is missing or corrupt.

``prefetch`` starts a load in a background thread (``ssm run`` does, while it imports Lightning);
the next ``load_dataset`` with the same arguments takes its result. Loaders may therefore run
off the main thread: they use no global random state (seeded generators only) and write nothing
but through ``ssm_cli.data.download`` and ``ssm_cli.data.cache``, which refuse to download or
build a cache during a prefetch (``cache.refuse_in_prefetch``); the load then runs in the caller.
"""
from __future__ import annotations

import importlib
import json
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from ssm_cli.data.base import DatasetBundle
from ssm_cli.errors import UserError
from ssm_cli.trace import trace


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


def loader(name: str):
    """The loader function of dataset ``name`` (importing its module)."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    module, fn = DATASETS[name].loader.split(":")
    return getattr(importlib.import_module(module), fn)


def load_dataset(name: str, data_dir: str | Path, **options) -> DatasetBundle:
    """Load dataset ``name`` from ``data_dir``; options are the dataset config's keys.

    Takes the result of a ``prefetch`` of the same arguments (waiting for it) when there is one;
    a prefetch that failed or gave up is not reported: the load runs here, as it would have."""
    fn = loader(name)
    pending = _PREFETCHES.pop(_key(name, data_dir, options), None)
    if pending is not None:
        t = time.perf_counter()
        try:
            bundle = pending.result()
        except Exception:  # e.g. data missing, or a download the prefetch may not do: load here
            pass
        else:
            trace(f"data loaded: {name} (prefetched; waited {time.perf_counter() - t:.2f} s)")
            return bundle
    bundle = fn(Path(data_dir), **options)
    trace(f"data loaded: {name}")
    return bundle


# ---------------------------------------------------------------- prefetch

_PREFETCHES: dict[str, Future] = {}


def _key(name: str, data_dir: str | Path, options: dict) -> str:
    return json.dumps([name, str(data_dir), options], sort_keys=True, default=str)


def prefetch(name: str, data_dir: str | Path, **options) -> Future:
    """Start ``load_dataset(name, data_dir, **options)`` in a background (daemon) thread.

    The next ``load_dataset`` with the same arguments returns its result; the loader's module is
    imported here, in the caller's thread. Data that would need a download or a cache build is not
    prefetched (the load then runs, with its progress bars, in the caller). Returns the future."""
    from ssm_cli.data.cache import prefetching

    key = _key(name, data_dir, options)
    if key in _PREFETCHES:
        return _PREFETCHES[key]
    fn = loader(name)
    future: Future = Future()

    def work() -> None:
        try:
            with prefetching():
                bundle = fn(Path(data_dir), **options)
        except BaseException as e:  # noqa: BLE001 - handed to the caller, who loads again
            future.set_exception(e)
            return
        try:
            _read_ahead(bundle)
            trace(f"data read in the background: {name}", sync=False)
        finally:
            future.set_result(bundle)

    _PREFETCHES[key] = future
    threading.Thread(target=work, name=f"ssm-prefetch-{name}", daemon=True).start()
    return future


READ_AHEAD_LIMIT = 4 * 2**30  # bytes per file


def _read_ahead(bundle: DatasetBundle) -> None:
    """Have the kernel read the bundle's memory-mapped arrays into the page cache, asynchronously
    (posix_fadvise WILLNEED: no CPU, no GIL), so that copying them to the device finds them there."""
    if not hasattr(os, "posix_fadvise"):
        return
    views = [bundle.train, bundle.val, bundle.test, *(ds for ds, _ in bundle.extra_eval.values())]
    for filename in {getattr(getattr(ds, "inputs", None), "filename", None) for ds in views} - {None}:
        try:
            fd = os.open(filename, os.O_RDONLY)
        except OSError:
            continue
        try:
            if os.fstat(fd).st_size <= READ_AHEAD_LIMIT:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def drop_prefetches() -> None:
    """Forget prefetches nobody took (their data is freed once their threads end)."""
    _PREFETCHES.clear()
