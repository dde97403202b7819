"""Layout experiment for the FFT convolution: batch-first (B, L, H) vs sequence-first (L, B, H).

    python benchmarks/conv_layout.py [--sizes 250x128 50x640] [--L 1024]

``FFTConv`` (what the cores run) takes (B, L, H): its zero-padding copy transposes to (B, H, 2L)
so that the FFTs run over contiguous rows, and its output / input gradient are transposed views.
The sequence-first form keeps (L, B, H) throughout: padding is a contiguous copy, the FFTs run
along dim 0 with all (B, H) signals interleaved (stride B*H), and the output is a contiguous
prefix. Both are checked against the reference ``fft_conv`` (float64), then timed forward +
backward, each followed by a GELU as in a block (so a strided output pays where it is read).
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ssm_cli.layers.fftconv import conv, fft_conv


class SeqFirstFFTConv(torch.autograd.Function):
    """u (L, B, H), k (C, H, 2L) two-sided or (C, H, L) causal, D (C, H) -> y (L, B, C*H)."""

    @staticmethod
    def forward(ctx, u, k, D):
        L, B_, H = u.shape
        C, n = k.shape[0], 2 * L
        k_f = torch.fft.rfft(k, n=n, norm="forward")  # (C H L+1)
        if D is not None:
            k_f = k_f.add(D[..., None], alpha=1.0 / n)
        k_t = k_f.permute(2, 0, 1).contiguous()  # (L+1 C H)
        buf = torch.empty(n, B_, H, dtype=u.dtype, device=u.device)
        buf[:L].copy_(u)
        buf[L:].zero_()
        u_f = torch.fft.rfft(buf, dim=0)  # (L+1 B H)
        y_f = u_f[:, :, None] * k_t[:, None] if C > 1 else (u_f * k_t[:, 0, None])[:, :, None]  # (L+1 B C H)
        y = torch.fft.irfft(y_f, n=n, dim=0, norm="forward")  # (n B C H)
        ctx.save_for_backward(u_f, k_t)
        ctx.L, ctx.k_len, ctx.has_D = L, k.shape[-1], D is not None
        return y[:L].flatten(2)  # (L B C*H) contiguous

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        u_f, k_t = ctx.saved_tensors  # (L+1 B H), (L+1 C H)
        L, n = ctx.L, 2 * ctx.L
        C, H = k_t.shape[1], k_t.shape[2]
        B_ = u_f.shape[1]
        buf = torch.empty(n, B_, C * H, dtype=g.dtype, device=g.device)
        buf[:L].copy_(g)
        buf[L:].zero_()
        g_f = torch.fft.rfft(buf, dim=0).view(L + 1, B_, C, H)  # (L+1 B C H)
        kc = k_t.conj().resolve_conj()  # (L+1 C H)
        q_f = g_f[:, :, 0] * kc[:, 0, None] if C == 1 else (g_f * kc[:, None]).sum(2)  # (L+1 B H)
        grad_u = torch.fft.irfft(q_f, n=n, dim=0, norm="forward")[:L]  # (L B H) contiguous
        s_f = (g_f * u_f.conj()[:, :, None]).sum(1)  # (L+1 C H)
        gk = torch.fft.irfft(s_f, n=n, dim=0).permute(1, 2, 0)  # (C H n)
        grad_D = gk[..., 0] if ctx.has_D else None
        return grad_u, gk[..., :ctx.k_len], grad_D


def check(device) -> None:
    torch.manual_seed(0)
    B_, L, H = 3, 16, 4
    for C in (1, 2):
        u = torch.randn(L, B_, H, dtype=torch.float64, device=device, requires_grad=True)
        k = torch.randn(C, H, 2 * L, dtype=torch.float64, device=device, requires_grad=True)
        D = torch.randn(C, H, dtype=torch.float64, device=device, requires_grad=True)
        g = torch.randn(L, B_, C * H, dtype=torch.float64, device=device)
        y = SeqFirstFFTConv.apply(u, k, D)
        grads = torch.autograd.grad(y, (u, k, D), g)
        # reference: the same circular kernel through fft_conv (k_back = reversed second half)
        k_fwd, k_back = k[..., :L], k[..., L:].flip(-1)
        ref = fft_conv(u.permute(1, 2, 0), k_fwd, k_back) + D[None, :, :, None] * u.permute(1, 2, 0)[:, None]
        ref = ref.permute(3, 0, 1, 2).reshape(L, B_, C * H)
        ref_grads = torch.autograd.grad(ref, (u, k, D), g)
        torch.testing.assert_close(y, ref)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b)
    print("sequence-first FFT convolution = reference (float64, C = 1 and 2)")


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
    ap.add_argument("--sizes", nargs="+", default=["250x128", "50x640", "50x128"], help="BxH")
    ap.add_argument("--L", type=int, default=1024)
    a = ap.parse_args(argv)
    device = torch.device("cuda")
    check(device)
    print("| B | H | batch-first (B, L, H) ms | sequence-first (L, B, H) ms | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for size in a.sizes:
        B_, H = map(int, size.split("x"))
        L = a.L
        k = torch.randn(1, H, 2 * L, device=device, requires_grad=True)
        D = torch.randn(1, H, device=device, requires_grad=True)
        u_b = torch.randn(B_, L, H, device=device, requires_grad=True)
        u_s = torch.randn(L, B_, H, device=device, requires_grad=True)
        g_b, g_s = torch.randn(B_, L, H, device=device), torch.randn(L, B_, H, device=device)
        t_b = time_pass(lambda u: F.gelu(conv(u, k, D)), u_b, g_b)
        t_s = time_pass(lambda u: F.gelu(SeqFirstFFTConv.apply(u, k, D)), u_s, g_s)
        print(f"| {B_} | {H} | {t_b:.3f} | {t_s:.3f} | {t_b / t_s:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
