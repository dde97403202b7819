"""The FFT convolution's zero-padding copy (B, L, H) -> (B, H, 2L): eager vs kept buffer vs compiled.

    python benchmarks/pad_copy.py [--B 250] [--L 1024] [--H 128]

The forward pads the (transposed) block input into an (B, H, 2L) buffer for the rfft; the backward
does the same for the output gradient. Variants, each timed alone (CUDA events, mean of 50 after
5 warm-ups) on a (B, L, H) float32 tensor read as its (B, H, L) transpose:
  eager     torch.empty + copy_ of the transposed view into the first half + zero_ of the second
  kept      copy_ into a kept buffer whose padding was zeroed once (``fftconv.ZeroPadded``)
  compiled  torch.compile'd F.pad of the transposed view (one kernel, tiled transposed reads)
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F


def bench(fn, x, steps: int = 50) -> float:
    for _ in range(5):
        fn(x)
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(steps):
        fn(x)
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / steps * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--B", type=int, default=250)
    ap.add_argument("--L", type=int, default=1024)
    ap.add_argument("--H", type=int, default=128)
    a = ap.parse_args(argv)
    B_, L, H = a.B, a.L, a.H
    x = torch.randn(B_, L, H, device="cuda")
    kept = torch.zeros(B_, H, 2 * L, device="cuda")

    def eager(x):
        buf = torch.empty(B_, H, 2 * L, device=x.device)
        buf[..., :L].copy_(x.transpose(1, 2))
        buf[..., L:].zero_()
        return buf

    def keep(x):
        kept[..., :L].copy_(x.transpose(1, 2))
        return kept

    compiled = torch.compile(lambda x: F.pad(x.transpose(1, 2), (0, L)), dynamic=False)
    ref = eager(x)
    assert torch.equal(compiled(x), ref) and torch.equal(keep(x), ref)
    mb = B_ * L * H * 4 / 1e6
    print(f"(B, L, H) = ({B_}, {L}, {H}) float32, {mb:.0f} MB in, {2 * mb:.0f} MB out")
    print("| variant | us | TB/s (bytes read + written) |")
    print("|---|---:|---:|")
    for name, fn, moved in (("eager", eager, 3 * mb), ("kept", keep, 2 * mb), ("compiled", compiled, 3 * mb)):
        t = bench(fn, x)
        print(f"| {name} | {t:.0f} | {moved / t:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
