"""Discretisation of a diagonal SSM x' = A x + B u, by name (FACTS §1).

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
