"""The FFT convolution's spectral products: complex torch ops vs one compiled kernel per product.

    python benchmarks/fftconv_spectra.py [--sizes 250x128 50x640] [--L 1024]

``ssm_cli.layers.fftconv`` multiplies spectra three times per convolution: forward U*K, backward
sum_c G conj(K) (for grad u) and sum_b G conj(U) (for grad k). As complex torch ops the backward
materialises conj(U) and the (B, C, H, F) product before the batch sum; ``conv(compiled=True)``
(CUDA; what ``compiled`` models run) computes them instead as torch.compile'd real arithmetic on view_as_real tensors (``product_real``,
``grads_real``). Both are timed forward + backward (each followed by a GELU, as in a block), CUDA
events, mean of 20 after 3 warm-ups, two-sided kernel (C=1, 2L taps) as in the sCIFAR model; the
outputs and gradients of the two are compared first.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from ssm_cli.layers import fftconv


def time_pass(fn, u, g, steps: int = 20) -> float:
    """Mean ms of forward + backward of ``fn`` over ``steps``, after 3 warm-ups, by CUDA events."""
    for _ in range(3):
        fn(u).backward(g)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        fn(u).backward(g)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / steps


def run(u, k, D, g, compiled: bool):
    ins = [t.clone().requires_grad_() for t in (u, k, D)]
    y = fftconv.conv(*ins, compiled=compiled)
    return [y.detach(), *torch.autograd.grad(y, ins, g)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["250x128", "50x640"], help="BxH")
    ap.add_argument("--L", type=int, default=1024)
    a = ap.parse_args(argv)
    device = torch.device("cuda")
    L = a.L
    print("| B | H | complex ops ms | compiled ms | speed-up | max rel. diff (y, grads) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in a.sizes:
        B_, H = map(int, size.split("x"))
        torch.manual_seed(0)
        u = torch.randn(B_, L, H, device=device)
        k = torch.randn(1, H, 2 * L, device=device) / L
        D = torch.randn(1, H, device=device)
        g = torch.randn(B_, L, H, device=device)
        a_out, b_out = run(u, k, D, g, False), run(u, k, D, g, True)
        diff = max(float((x - y).norm() / y.norm()) for x, y in zip(b_out, a_out))
        times = []
        for compiled in (False, True):
            kk, DD = k.clone().requires_grad_(), D.clone().requires_grad_()
            times.append(time_pass(lambda x: F.gelu(fftconv.conv(x, kk, DD, compiled=compiled)),
                                   u.clone().requires_grad_(), g))
        print(f"| {B_} | {H} | {times[0]:.3f} | {times[1]:.3f} | {times[0] / times[1]:.2f}x | {diff:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
