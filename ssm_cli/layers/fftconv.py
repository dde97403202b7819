"""Convolution of a signal with SSM kernels by FFT (length 2L: no circular wrap-around).

Two implementations of the same map:

* ``fft_conv``: the readable reference, (B, H, L) layout, autograd through torch.fft (kept for tests).
* ``FFTConv`` / ``conv``: what the cores run. One autograd Function with a hand-written backward,
  written to minimise full passes over (B, L, H)-sized tensors on a GPU:
  - it reads and writes the (B, L, C*H) layout of the network directly (the transposes are fused
    into the zero padding before the forward FFT and into the final copy that drops the padding);
  - the D skip term is folded into tap 0 of the kernel (a flat spectrum D), so there is no separate
    D*u pass forward and no D-gradient reduction backward (D's gradient is tap 0 of the kernel's);
  - the 1/(2L) of the inverse FFT is applied to the small kernel spectrum, not to the output;
  - the backward transforms the time-reversed output gradient, whose spectrum is exp(2 pi i f/2L)
    conj(G): the two correlations of the backward pass then need no conjugated copy of a
    (B, H, L+1) spectrum, and no zero-fill/scatter of autograd's irfft/rfft backward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def fft_conv(u: torch.Tensor, k: torch.Tensor, k_back: torch.Tensor | None = None) -> torch.Tensor:
    """y[b,c,h,t] = sum_{s<=t} k[c,h,t-s] u[b,h,s]  (+ sum_{s>t} k_back[c,h,s-t-1] u[b,h,s]).

    u: (B, H, L) float32; k, k_back: (C, H, L) float32 -> y: (B, C, H, L) float32.
    The backward kernel (bidirectional cores) acts on strictly future inputs, as in the S4
    reference: the present input is seen once, by the forward kernel. Reference formulation
    (autograd through torch.fft); the cores run ``conv``.
    """
    L = u.shape[-1]
    if k_back is not None:
        k = F.pad(k, (0, L)) + F.pad(k_back.flip(-1), (L, 0))  # (C H 2L)
    u_f = torch.fft.rfft(u, n=2 * L)  # (B H L+1)
    k_f = torch.fft.rfft(k, n=2 * L)  # (C H L+1)
    y = torch.fft.irfft(u_f[:, None] * k_f, n=2 * L)  # (B C H 2L)
    return y[..., :L]  # (B C H L)


def two_sided(k: torch.Tensor, k_back: torch.Tensor | None = None) -> torch.Tensor:
    """The circular kernel of length 2L of ``fft_conv``: [k, reversed k_back] (C, H, 2L), one cat.

    Tap 2L-1-i holds k_back[i] (lag -(i+1): strictly future inputs). Without ``k_back``: k (C, H, L)
    itself (``conv`` zero-pads it inside the FFT).
    """
    if k_back is None:
        return k  # (C H L)
    return torch.cat([k, k_back.flip(-1)], dim=-1)  # (C H 2L)


class FFTConv(torch.autograd.Function):
    """y (B, L, C*H) = causal/two-sided convolution of u (B, L, H) with k (C, H, L or 2L) + D u.

    k of length L: a causal kernel (zero-padded to 2L); of length 2L: the circular two-sided kernel
    of ``two_sided``. D (C, H) or None: the skip term, added to tap 0. Output channel c*H + h.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None) -> torch.Tensor:
        B_, L, H = u.shape
        C, n = k.shape[0], 2 * L
        # kernel spectrum with 1/n of the inverse FFT and D folded in (D at tap 0 = flat spectrum D)
        k_f = torch.fft.rfft(k, n=n, norm="forward")  # (C H L+1) = DFT(k) / n
        if D is not None:
            k_f = k_f.add(D[..., None], alpha=1.0 / n)  # (C H L+1) = DFT(k + D delta_0) / n
        u_f = torch.fft.rfft(u.transpose(1, 2), n=n)  # (B H L+1); the zero padding does the transpose
        y = torch.fft.irfft(u_f[:, None] * k_f, n=n, norm="forward")  # (B C H 2L), no 1/n pass
        ctx.save_for_backward(u_f, k_f)
        ctx.L, ctx.k_len, ctx.has_D = L, k.shape[-1], D is not None
        # drop the padding and go back to (B, L, C, H) in one copy
        return y[..., :L].permute(0, 3, 1, 2).contiguous().view(B_, L, C * H)  # (B L C*H)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        u_f, k_f = ctx.saved_tensors  # (B H L+1), (C H L+1)
        L, n = ctx.L, 2 * ctx.L
        B_, C, H = u_f.shape[0], k_f.shape[0], u_f.shape[1]
        g = g.reshape(B_, L, C, H).permute(0, 2, 3, 1)  # (B C H L) view
        # spectrum of the reversed, zero-padded gradient: g at taps 2L-1 ... L (DFT = w^-f conj(G))
        g_f = torch.fft.rfft(F.pad(g.flip(-1), (L, 0)))  # (B C H L+1)
        grad_u = grad_k = grad_D = None
        if ctx.needs_input_grad[0]:
            q_f = g_f * k_f  # (B C H L+1)
            q_f = q_f[:, 0] if C == 1 else q_f.sum(1)  # (B H L+1)
            q = torch.fft.irfft(q_f, n=n, norm="forward")  # (B H 2L): grad_u reversed at taps 2L-1 ... L
            rev = torch.arange(n - 1, L - 1, -1, device=q.device)  # (L) taps 2L-1 ... L
            # reversal and transpose back to (B, L, H) in one gather (flip would keep the (B H L) layout)
            grad_u = torch.index_select(q.transpose(1, 2), 1, rev)  # (B L H) contiguous
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            s_f = (g_f * u_f[:, None]).sum(0)  # (C H L+1)
            gk = torch.fft.irfft(s_f, n=n).flip(-1)  # (C H 2L): gradient of the circular kernel
            if ctx.needs_input_grad[1]:
                grad_k = gk[..., :ctx.k_len]  # (C H L) or (C H 2L)
            if ctx.has_D and ctx.needs_input_grad[2]:
                grad_D = gk[..., 0]  # (C H)
        return grad_u, grad_k, grad_D


def conv(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """u (B, L, H), k (C, H, L) causal or (C, H, 2L) two-sided (``two_sided``), D (C, H) -> (B, L, C*H).

    Same numbers (up to float rounding) as ``fft_conv`` plus D u, in the network's layout.
    """
    return FFTConv.apply(u, k, D)
