"""The diagonal SSM convolution kernel (Vandermonde product), fast and brute-force.

K[c, h, l] = Re sum_m W[c, h, m] * exp(l * log_Abar[h, m]),  l = 0 … L-1,
with W = C * Bbar (times 2 for conjugate-symmetric states, times the DSS scale for ``dss``).

Fast path (``vandermonde``): write l = j*T + r (block length T, J = ceil(L/T) blocks), so that
exp(l z) = exp(jT z) * exp(r z). Two small complex tables, (H, M, T) and (H, M, J), replace the
(H, M, L) one, and the sum over m becomes one real batched matmul:
  K[c, h, j, r] = [Re(W S), -Im(W S)] (C H J 2M)  @  [Re V; Im V] (H 2M T).
Working set O(C·H·M·(J + T)) ≈ O(H·M·sqrt(L)) instead of O(H·M·L); no Python loop over L.
``vandermonde`` builds both tables as complex exponentials and feeds the GEMM the interleaved real
views of W S (H, C·J, 2M) and conj(V) (H, T, 2M): few small kernels, no broadcast copy of V over C.
A single block (T = L) would save ~17 small kernels per core and step but makes the (H, M, L)
table and its gradient passes about as large as the activations (sCIFAR: 32 MiB vs 25 MiB per pass),
so the blocked default stays; ``block=`` (``--block`` in benchmarks/speed.py) selects it explicitly.
"""
from __future__ import annotations

import math

import torch


def block_length(L: int) -> int:
    """Default block length T: L itself for L <= 256 (one block), else 2^ceil(log2 sqrt L)."""
    if L <= 256:
        return L
    return 1 << math.ceil(math.log2(math.sqrt(L)))


def vandermonde(W: torch.Tensor, log_Abar: torch.Tensor, L: int, block: int | None = None) -> torch.Tensor:
    """Real kernel K (C, H, L) = Re sum_m W[c,h,m] exp(l log_Abar[h,m]).

    W: (C, H, M) complex; log_Abar: (H, M) complex (same precision). Returns the matching real dtype
    (a strided view of an (H, C, J*T) buffer). Few, small kernels (the step runs inside a CUDA graph
    and is bound by their number): the tables are complex exponentials, and the GEMM reads the real
    views of [W S] and conj(V) interleaved (re, im), since Re(a v) = re(a) re(v) + im(a) im(conj v).
    Same numbers as ``_vandermonde_real`` up to float rounding.
    """
    T = block or block_length(L)
    J = -(-L // T)
    C, H, M = W.shape
    real = log_Abar.real.dtype
    r = torch.arange(T, device=log_Abar.device, dtype=real)  # (T)
    Vc = torch.exp(torch.conj_physical(log_Abar)[:, None, :] * r[:, None])  # (H T M) = conj(Abar^r)
    A = W.permute(1, 0, 2)[:, :, None, :]  # (H C 1 M)
    if J > 1:  # W * Abar^(jT)
        j = torch.arange(0, J * T, T, device=log_Abar.device, dtype=real)  # (J) = j T
        S = torch.exp(log_Abar[:, None, :] * j[:, None])  # (H J M)
        A = S[:, None] * A  # (H C J M)
    a = torch.view_as_real(A).reshape(H, C * J, 2 * M)  # (H CJ 2M): (re, im) interleaved
    v = torch.view_as_real(Vc).reshape(H, T, 2 * M)  # (H T 2M)
    K = IEEEMatmulNT.apply(a, v)  # (H CJ T)
    return K.view(H, C, J * T)[..., :L].transpose(0, 1)  # (C H L)


def _vandermonde_real(W: torch.Tensor, log_Abar: torch.Tensor, L: int, block: int | None = None) -> torch.Tensor:
    """The same blocked product in real arithmetic (the former implementation; kept for tests)."""
    T = block or block_length(L)
    J = -(-L // T)
    C, H, M = W.shape
    zr, zi = log_Abar.real, log_Abar.imag  # (H M) each
    wr, wi = W.real, W.imag  # (C H M) each
    r = torch.arange(T, device=zr.device, dtype=zr.dtype)  # (T)
    mag, ph = torch.exp(zr[:, :, None] * r), zi[:, :, None] * r  # (H M T)
    Vr = torch.cat([mag * torch.cos(ph), mag * torch.sin(ph)], dim=1)  # (H 2M T) = [Re V; Im V]
    if J > 1:  # W * exp(j T log_Abar), in real arithmetic
        j = torch.arange(J, device=zr.device, dtype=zr.dtype) * T  # (J)
        mag, ph = torch.exp(zr[:, None, :] * j[:, None]), zi[:, None, :] * j[:, None]  # (H J M)
        sr, si = mag * torch.cos(ph), mag * torch.sin(ph)  # (H J M)
        wr, wi = wr[:, :, None, :], wi[:, :, None, :]  # (C H 1 M)
        wr, wi = wr * sr - wi * si, wr * si + wi * sr  # (C H J M)
    else:
        wr, wi = wr[:, :, None, :], wi[:, :, None, :]  # (C H 1 M)
    Wr = torch.cat([wr, -wi], dim=-1)  # (C H J 2M)
    K = IEEEMatmul.apply(Wr, Vr)  # (C H J T)
    return K.reshape(C, H, J * T)[..., :L]  # (C H L)


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b in IEEE float32 even where TF32 matmuls are enabled (CUDA): the kernel sums terms with
    large phases, and TF32's 10-bit mantissa costs ~3e-4 relative error; this GEMM is tiny anyway."""
    prev = torch.get_float32_matmul_precision()
    if not (a.is_cuda and a.dtype == torch.float32 and prev != "highest"):
        return torch.matmul(a, b)
    torch.set_float32_matmul_precision("highest")
    try:
        return torch.matmul(a, b)
    finally:
        torch.set_float32_matmul_precision(prev)


class IEEEMatmul(torch.autograd.Function):
    """(C, H, J, K) @ (H, K, T) -> (C, H, J, T), forward and backward through ``_mm``."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        return _mm(a, b)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        a, b = ctx.saved_tensors
        ga = _mm(g, b.transpose(-1, -2)) if ctx.needs_input_grad[0] else None  # (C H J K)
        gb = _mm(a.transpose(-1, -2), g).sum(0) if ctx.needs_input_grad[1] else None  # (H K T)
        return ga, gb


class IEEEMatmulNT(torch.autograd.Function):
    """(..., I, K) @ (..., T, K)^T -> (..., I, T) through ``_mm``; both gradients come out in their
    operand's own layout (no transposed-gradient copies)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        return _mm(a, b.transpose(-1, -2))

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        a, b = ctx.saved_tensors
        ga = _mm(g, b) if ctx.needs_input_grad[0] else None  # (... I K)
        gb = _mm(g.transpose(-1, -2), a) if ctx.needs_input_grad[1] else None  # (... T K)
        return ga, gb


def vandermonde_reference(W: torch.Tensor, log_Abar: torch.Tensor, L: int) -> torch.Tensor:
    """Brute force: K[c,h,l] = Re sum_m W Abar^l with Abar^l by repeated multiplication (slow, for tests)."""
    Abar = torch.exp(log_Abar)  # (H M)
    power = torch.ones_like(Abar)  # (H M)
    out = []
    for _ in range(L):
        out.append((W * power).sum(-1).real)  # (C H)
        power = power * Abar
    return torch.stack(out, -1)  # (C H L)
