"""Convolution of a signal with SSM kernels by FFT (length 2L: no circular wrap-around)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def fft_conv(u: torch.Tensor, k: torch.Tensor, k_back: torch.Tensor | None = None) -> torch.Tensor:
    """y[b,c,h,t] = sum_{s<=t} k[c,h,t-s] u[b,h,s]  (+ sum_{s>t} k_back[c,h,s-t-1] u[b,h,s]).

    u: (B, H, L) float32; k, k_back: (C, H, L) float32 -> y: (B, C, H, L) float32.
    The backward kernel (bidirectional cores) acts on strictly future inputs, as in the S4
    reference: the present input is seen once, by the forward kernel.
    """
    L = u.shape[-1]
    if k_back is not None:
        k = F.pad(k, (0, L)) + F.pad(k_back.flip(-1), (L, 0))  # (C H 2L)
    u_f = torch.fft.rfft(u, n=2 * L)  # (B H L+1)
    k_f = torch.fft.rfft(k, n=2 * L)  # (C H L+1)
    y = torch.fft.irfft(u_f[:, None] * k_f, n=2 * L)  # (B C H 2L)
    return y[..., :L]  # (B C H L)
