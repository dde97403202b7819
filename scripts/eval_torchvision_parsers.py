"""Measure torchvision's CIFAR10/MNIST against our readers on files in the real formats
(docs/dataset-parsers.md). Run from the repository root: python scripts/eval_torchvision_parsers.py"""
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np
from tests.data import fixtures as F
import torchvision
from ssm_cli.data import mnist
print("torchvision", torchvision.__version__)
root = Path(tempfile.mkdtemp())
F.write_cifar_pickles(root / "cifar10")
try:
    torchvision.datasets.CIFAR10(root / "cifar10", train=True, download=False)
    print("CIFAR10 on fixture pickles: read")
except Exception as e:
    print("CIFAR10 on fixture pickles:", type(e).__name__, e)
# corrupt an MNIST file: ours names it; torchvision?
F.write_mnist_idx(root, gz=False, layout="torchvision")
raw = root / "mnist" / "MNIST" / "raw"
ds = torchvision.datasets.MNIST(root / "mnist", train=True, download=False)
print("MNIST fixture read by torchvision:", len(ds))
p = raw / "train-images-idx3-ubyte"
p.write_bytes(p.read_bytes()[:1000])
try:
    torchvision.datasets.MNIST(root / "mnist", train=True, download=False)
    print("truncated MNIST: no error")
except Exception as e:
    print("truncated MNIST, torchvision:", type(e).__name__, str(e)[:200])
try:
    mnist.read_idx(p)
except Exception as e:
    print("truncated MNIST, ours:", type(e).__name__, str(e)[:200])
# speed on full-size MNIST-shaped files (60k x 28 x 28)
big = Path(tempfile.mkdtemp()) / "MNIST" / "raw"; big.mkdir(parents=True)
imgs = np.random.default_rng(0).integers(0, 256, (60000, 28, 28), dtype=np.uint8)
lab = np.random.default_rng(0).integers(0, 10, 60000, dtype=np.uint8)
(big / "train-images-idx3-ubyte").write_bytes(F._idx_bytes(imgs))
(big / "train-labels-idx1-ubyte").write_bytes(F._idx_bytes(lab))
(big / "t10k-images-idx3-ubyte").write_bytes(F._idx_bytes(imgs[:10000]))
(big / "t10k-labels-idx1-ubyte").write_bytes(F._idx_bytes(lab[:10000]))
for name, fn in [("torchvision MNIST(train)", lambda: torchvision.datasets.MNIST(big.parent.parent, train=True).data),
                 ("ours read_idx(train images)", lambda: mnist.read_idx(big / "train-images-idx3-ubyte"))]:
    ts = []
    for _ in range(3):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    print(name, f"best of 3: {min(ts)*1000:.1f} ms")
