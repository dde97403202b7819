"""Discretisation of a diagonal SSM x' = A x + B u, by name (docs/papers.md §1).

Every function takes the continuous A (H, M) complex, the step dt (H,) real and B (H, M) complex,
and returns (log_Abar, Bbar): log_Abar (H, M) complex with Abar = exp(log_Abar), so that
Abar^l = exp(l * log_Abar) for integer l (any branch of the log works), and Bbar (H, M) complex.

| disc | Abar | Bbar |
|---|---|---|
| ``zoh`` | exp(dt A) | (exp(dt A) - 1) / A * B |
| ``bilinear`` | (1 + dt A/2) / (1 - dt A/2) | dt / (1 - dt A/2) * B |
| ``dss`` | as ``zoh``; the kernel's C·Bbar is then divided by sum_{l<L} Abar^l (see ``dss_scale``) |
"""
from __future__ import annotations

import torch

DISCS = ("zoh", "bilinear", "dss")


def zoh(A: torch.Tensor, dt: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold: (dt A, (exp(dt A) - 1)/A B); shapes (H, M)."""
    dtA = dt[:, None] * A  # (H M)
    return dtA, torch.expm1(dtA) / A * B  # (H M), (H M)


def bilinear(A: torch.Tensor, dt: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear (Tustin): (log((1 + dt A/2)/(1 - dt A/2)), dt/(1 - dt A/2) B); shapes (H, M)."""
    half = dt[:, None] * A / 2  # (H M)
    log_Abar = torch.log1p(half) - torch.log1p(-half)  # (H M)
    return log_Abar, dt[:, None] / (1 - half) * B  # (H M), (H M)


def discretize(method: str, A: torch.Tensor, dt: torch.Tensor, B: torch.Tensor):
    """Dispatch by name; ``dss`` discretises like ``zoh``."""
    if method in ("zoh", "dss"):
        return zoh(A, dt, B)
    if method == "bilinear":
        return bilinear(A, dt, B)
    raise ValueError(f"unknown disc {method!r}; valid: {', '.join(DISCS)}")


def dss_scale(log_Abar: torch.Tensor, L: int) -> torch.Tensor:
    """1 / sum_{l<L} Abar^l = (Abar - 1)/(Abar^L - 1): the DSS softmax normaliser, (H, M) complex."""
    return torch.expm1(log_Abar) / torch.expm1(log_Abar * L)  # (H M)


class ZOHWeights(torch.autograd.Function):
    """(log_Abar, W) = (dt A, scale * C * (exp(dt A) - 1) / A * B) for ``zoh``, with a hand-written backward.

    The same numbers as ``zoh`` followed by ``scale * C * Bbar``; the backward forms each conjugate
    once and fuses multiply-adds (autograd through the complex ops materialises a conjugated copy
    per product: about a dozen more small kernels per core and step). A, B (H, M) complex (may be
    broadcast views), dt (H,) real, C (dC, H, M) complex, scale a float.
    """

    @staticmethod
    def forward(ctx, A, dt, B, C, scale: float):
        z = dt[:, None] * A  # (H M)
        E = torch.expm1(z)  # (H M)
        F = E / A  # (H M)
        Bbar = F * B  # (H M)
        Cs = scale * C if scale != 1 else C  # (dC H M)
        W = Cs * Bbar  # (dC H M)
        ctx.save_for_backward(A, dt, B, C, z, F, Bbar)
        ctx.scale = scale
        return z, W

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gz, gW):
        A, dt, B, C, z, F, Bbar = ctx.saved_tensors
        s = ctx.scale
        gA = gdt = gB = gC = None
        if gW is not None:
            if ctx.needs_input_grad[3]:
                gC = gW * torch.conj_physical(Bbar if s == 1 else s * Bbar)  # (dC H M)
            gBbar = (gW * torch.conj_physical(C)).sum(0)  # (H M)
            if s != 1:
                gBbar = gBbar * s  # (H M)
            Fc = torch.conj_physical(F)  # (H M)
            if ctx.needs_input_grad[2]:
                gB = gBbar * Fc  # (H M)
            Ac = torch.conj_physical(A)  # (H M)
            gE = gBbar * torch.conj_physical(B) / Ac  # (H M): dBbar/dE = B / A
            gA = -(gE * Fc)  # (H M): dF/dA = -F / A, so gF conj(-F/A) = -gE conj(F)
            gz = torch.addcmul(gz, gE, torch.exp(torch.conj_physical(z))) if gz is not None else \
                gE * torch.exp(torch.conj_physical(z))  # (H M): dE/dz = exp(z)
        else:
            Ac = torch.conj_physical(A)  # (H M)
            gA = torch.zeros_like(gz)
        if gz is not None:
            gA = torch.addcmul(gA, gz, dt[:, None])  # (H M)
            if ctx.needs_input_grad[1]:
                gdt = (gz * Ac).real.sum(-1)  # (H)
        return gA, gdt, gB, gC, None


def zoh_weights(A: torch.Tensor, dt: torch.Tensor, B: torch.Tensor, C: torch.Tensor, scale: float = 1.0):
    """(log_Abar (H, M), W (dC, H, M)) = (dt A, scale * C * Bbar) of ``zoh``, one autograd node."""
    return ZOHWeights.apply(A, dt, B, C, scale)
