"""Ask the kernel to read the training libraries' files ahead, from a separate process.

``ssm run`` imports torch, Lightning (with torchmetrics, torchvision...) and torch.compile's
Inductor one file at a time, and on a machine whose disk has not served them yet (a freshly started
cloud machine) each of those thousands of small reads waits for the disk. ``start`` launches
``python -m ssm_cli.readahead``, which walks the packages' folders and asks the kernel to read every
Python, bytecode and small shared-library file into the page cache (``posix_fadvise`` WILLNEED:
queued, read in parallel), while the run's own process imports. It changes no file and nothing a
run computes; on a machine that has the files cached it costs a walk of the folders in another
process. Linux (``posix_fadvise``) only; elsewhere it does nothing.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

# top-level packages a GPU run imports (directly or through Lightning, torchmetrics, Inductor)
PACKAGES = ("torch", "triton", "pytorch_lightning", "lightning_fabric", "lightning_utilities", "torchmetrics",
            "torchvision", "sympy", "numpy", "hydra", "omegaconf", "transformers", "scipy", "sklearn")
SUFFIXES = (".py", ".pyc", ".so")
SIZE_LIMIT = 64 * 2**20  # bytes: a large library (libtorch_cuda) is mapped and read in part, not whole


def package_dirs(names=PACKAGES) -> list[Path]:
    """The folders of those of ``names`` that are installed (nothing is imported)."""
    dirs = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            dirs.append(Path(location))
    return dirs


def files(dirs: list[Path]):
    """Paths of the files to read ahead under ``dirs``, smallest folders' files first as walked."""
    for d in dirs:
        for root, _, names in os.walk(d):
            for name in names:
                if name.endswith(SUFFIXES):
                    yield os.path.join(root, name)


def read_ahead(dirs: list[Path]) -> int:
    """posix_fadvise(WILLNEED) on every file of ``files(dirs)`` under ``SIZE_LIMIT``; the count."""
    n = 0
    for path in files(dirs):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if os.fstat(fd).st_size <= SIZE_LIMIT:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                n += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return n


def start() -> subprocess.Popen | None:
    """Launch the read-ahead process (Linux); None where it cannot run."""
    if not hasattr(os, "posix_fadvise"):
        return None
    try:
        return subprocess.Popen([sys.executable, "-m", "ssm_cli.readahead"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


if __name__ == "__main__":
    print(f"{read_ahead(package_dirs())} files", flush=True)
