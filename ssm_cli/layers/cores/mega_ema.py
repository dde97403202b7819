"""Mega's multi-dimensional damped EMA ("Mega: Moving Average Equipped Gated Attention", Ma et al.
2022, §2-3; docs/family.md) as a core: the EMA alone, in our residual backbone (not Mega's gated
attention block).

Per channel h, n = 1..n_dim EMA dimensions (all per h and n), with the EMA weight
a = sigmoid(alpha), the damping f = sigmoid(delta) and q = 1 - a f (the paper's α, δ, β, η;
η is ``gamma`` here, as in the authors' code):
    x_t[n] = a[n] beta[n] u_t + q[n] x_{t-1}[n]            (recurrence, ``step``)
    y_t    = sum_n gamma[n] / sqrt(n_dim) x_t[n] + D u_t
so the kernel is  K[l] = sum_n gamma[n] / sqrt(n_dim) a[n] beta[n] (1 - a[n] f[n])^l  (``kernel``).
Parameters (d = 2 if bidirectional: each direction its own, as in the authors' layer):
  delta, alpha (d, H, n)   raw; N(0, 0.2)                                  tagged lr, wd 0
  beta (d, H, n)           N(0, 0.02) + (1, -1, 1, -1, ...) over n          tagged lr, wd 0
  gamma (d, C, H, n)       N(0, 1)                                          global lr unless lr_C
  D (C, H)                 N(0, 1) (the authors' omega)                    global
Discrete-time: there is no step size, so ``rate`` must be 1.
"""
from __future__ import annotations

import math

import torch

from ...errors import UserError
from ...values import Range
from ..base import SSMCore, register
from ..registry import register_core

OPTIONS = {
    "n_dim": (Range(1, integer=True), 16),     # EMA dimensions per channel (authors' LRA runs: 16)
    "bidirectional": ((False, True), False),   # a second EMA for the backward direction, summed
    "channels": (Range(1, integer=True), 1),   # output copies C (each its own gamma and D)
    "lr": (Range(0), 0.001),                   # learning rate of delta, alpha, beta (weight decay 0)
    "lr_C": (Range(0, none=True), None),       # learning rate of gamma (wd 0); None = global group
    "seed": ((int, type(None)), None),
}


def check_rate(core: str, rate: float) -> None:
    """Discrete-time cores have no step size to rescale."""
    if rate != 1.0:
        raise UserError(f"the {core} core is discrete-time (no step size): rate must be 1, got {rate}")


@register_core("mega_ema", options=OPTIONS, doc="Mega's multi-dimensional damped EMA (Ma et al. 2022)")
class MegaEMA(SSMCore):
    """Damped EMA core: u (B, L, H) -> y (B, L, C*H); see the module docstring for the formula."""

    def __init__(self, d_model: int, d_state: int = 64, *, n_dim: int = 16, bidirectional: bool = False,
                 channels: int = 1, lr: float = 0.001, lr_C: float | None = None, seed: int | None = None):
        super().__init__()
        self.options = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        if d_model < 1 or channels < 1 or n_dim < 1:
            raise UserError(f"d_model, channels and n_dim must be >= 1; got {d_model}, {channels}, {n_dim}")
        H, n, d = d_model, n_dim, (2 if bidirectional else 1)
        self.d_model, self.channels, self.bidirectional, self.n_dim = H, channels, bidirectional, n
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        sign = torch.ones(n)
        sign[1::2] = -1.0  # beta starts near (1, -1, 1, ...) (the authors' choice: more stable)
        register(self, "delta", 0.2 * torch.randn(d, H, n, generator=gen), lr=lr)  # (d H n)
        register(self, "alpha", 0.2 * torch.randn(d, H, n, generator=gen), lr=lr)  # (d H n)
        register(self, "beta", 0.02 * torch.randn(d, H, n, generator=gen) + sign, lr=lr)  # (d H n)
        register(self, "gamma", torch.randn(d, channels, H, n, generator=gen), lr=lr_C)  # (d C H n)
        self._init_D(gen)

    def coefficients(self):
        """(w, q): the input weight w = gamma/sqrt(n) a beta (d, C, H, n) and the decay q (d, H, n)."""
        a = torch.sigmoid(self.alpha)  # (d H n)
        q = 1.0 - a * torch.sigmoid(self.delta)  # (d H n), in (0, 1)
        w = self.gamma * (a * self.beta)[:, None] / math.sqrt(self.n_dim)  # (d C H n)
        return w, q

    def kernel(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """K (C, H, L), or (2, C, H, L) = (forward, backward) if bidirectional."""
        check_rate("mega_ema", rate)
        w, q = self.coefficients()  # (d C H n), (d H n)
        ell = torch.arange(L, device=q.device, dtype=q.dtype)  # (L)
        powers = torch.exp(torch.log(q)[..., None] * ell)  # (d H n L) = q^l
        k = torch.einsum("dchn,dhnl->dchl", w, powers)  # (d C H L)
        return k if self.bidirectional else k[0]

    def init_state(self, batch: int) -> torch.Tensor:
        """Zero state (batch, H, n)."""
        if self.bidirectional:
            raise UserError("a bidirectional core has no recurrent view")
        return torch.zeros(batch, self.d_model, self.n_dim, dtype=self.delta.dtype, device=self.delta.device)

    def step(self, u_t: torch.Tensor, state: torch.Tensor, rate: float = 1.0):
        """x = a beta u_t + q x; y = sum_n gamma/sqrt(n) x + D u_t. u_t (B, H) -> (B, C*H)."""
        if self.bidirectional:
            raise UserError("a bidirectional core has no recurrent view")
        check_rate("mega_ema", rate)
        a = torch.sigmoid(self.alpha[0])  # (H n)
        q = 1.0 - a * torch.sigmoid(self.delta[0])  # (H n)
        state = a * self.beta[0] * u_t[..., None] + q * state  # (B H n)
        y = torch.einsum("chn,bhn->bch", self.gamma[0], state) / math.sqrt(self.n_dim)  # (B C H)
        y = y + self.D[None] * u_t[:, None]  # (B C H)
        return y.reshape(u_t.shape[0], -1), state
