"""FFT convolution in float32 vs float16 (cuFFT half precision): error and time, side by side.

    python benchmarks/fft_precision.py [--sizes 250x128 50x640] [--L 1024]

Both run ``ssm_cli.layers.fftconv.conv`` on the sCIFAR block's shapes with a real kernel: the
bidirectional S4D-Inv kernel (N=64, ZOH) of ``ssm_cli.layers.s4d``, inputs N(0, 1) as after a
LayerNorm and an output gradient of 1e-6 per element (about what a network's loss sends back: in
float16's subnormal range, so the half path's scaling is exercised). Errors are relative norms
against the float64 reference ``fft_conv`` (+ D u); times are forward + backward, each followed by
a GELU as in a block, CUDA events, mean of 20 after 3 warm-ups.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from ssm_cli.layers.fftconv import conv, fft_conv
from ssm_cli.layers import build


def reference(u, k, D):
    """float64 fft_conv of the two-sided kernel + D u, (B, L, C*H)."""
    L = u.shape[1]
    y = fft_conv(u.transpose(1, 2), k[..., :L], k[..., L:].flip(-1))  # (B C H L)
    y = y + D[None, :, :, None] * u.transpose(1, 2)[:, None]
    return y.permute(0, 3, 1, 2).flatten(2)


def rel(a, b) -> float:
    return float((a.double() - b).norm() / b.norm())


def time_pass(fn, u, g, steps: int = 20) -> float:
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["250x128", "50x640"], help="BxH")
    ap.add_argument("--L", type=int, default=1024)
    ap.add_argument("--grad-scale", type=float, default=1e-6)
    a = ap.parse_args(argv)
    device = torch.device("cuda")
    L = a.L
    print("| B | H | float32 ms | float16 ms | speed-up | rel. error y | grad u | grad k | grad D |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in a.sizes:
        B_, H = map(int, size.split("x"))
        torch.manual_seed(0)
        core = build("s4d", H, 64, init="inv", bidirectional=True).to(device)
        with torch.no_grad():
            k0 = core.conv_kernel(L).float()  # (1 H 2L)
        D0 = core.D.detach().float()
        u0 = torch.randn(B_, L, H, device=device)
        g = torch.randn(B_, L, H, device=device) * a.grad_scale
        ref_in = [t.double().requires_grad_() for t in (u0, k0, D0)]
        y_ref = reference(*ref_in)
        ref_grads = torch.autograd.grad(y_ref, ref_in, g.double())
        errs = []
        for dtype in ("float16",):
            ins = [t.clone().requires_grad_() for t in (u0, k0, D0)]
            y = conv(*ins, fft_dtype=dtype)
            grads = torch.autograd.grad(y, ins, g)
            errs = [rel(y, y_ref.detach())] + [rel(x, r) for x, r in zip(grads, ref_grads)]
        k = k0.clone().requires_grad_()
        D = D0.clone().requires_grad_()
        u = u0.clone().requires_grad_()
        t32 = time_pass(lambda x: F.gelu(conv(x, k, D, fft_dtype="float32")), u, g)
        t16 = time_pass(lambda x: F.gelu(conv(x, k, D, fft_dtype="float16")), u, g)
        e = " | ".join(f"{v:.1e}" for v in errs)
        print(f"| {B_} | {H} | {t32:.3f} | {t16:.3f} | {t32 / t16:.2f}x | {e} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
