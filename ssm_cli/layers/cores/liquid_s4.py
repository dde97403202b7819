"""Liquid-S4 ("Liquid Structural State-Space Models", Hasani et al. 2022; docs/family.md): S4's
kernel plus the liquid terms, input correlations up to order P, in the PB form.

The liquid system x' = (A + B u(t)) x + B u(t) unrolled in discrete time adds, to S4's
y = K * u + D u, terms in products of p inputs. The PB kernel (the paper's "polynomial in B",
Abar taken as the identity inside the correlation terms) keeps one coefficient per order:
    y_k += sum_{p=2..P}  c_p  u_k u_{k-1} ... u_{k-p+1},      c_p = Re sum_n C~_n (Bbar_n)^p
per channel h and output copy c, with Bbar the bilinear B in S4's (full, N-mode) eigenbasis and
C~ the stored C (as the authors' layer uses it). Bidirectional: the backward C~ gives c_p of the
strictly future products u_{k+1} ... u_{k+p} (the backward kernel's convention, lags < 0).
``liquid_order=1`` is S4 itself. Differences from the authors' code: their order-p product is
the p-1-fold shifted self-product (u_k u_{k-1}^2 u_{k-2} at p = 3) and their Bbar^p is
Bbar * sum(Bbar) per order, from the diagonal part only; here the consecutive product and the
elementwise power of the exact bilinear Bbar, as the paper writes them.
Options: the S4 core's (cores/s4.py) and liquid_order.
"""
from __future__ import annotations

import torch

from ...errors import UserError
from ...values import Range
from ..base import SSMCore
from ..registry import register_core
from .s4 import OPTIONS as S4_OPTIONS
from .s4 import DPLRSSM

OPTIONS = {
    **S4_OPTIONS,
    "liquid_order": (Range(1, integer=True), 2),  # P, highest input-correlation order (1: plain S4)
    "liquid_kernel": (("pb",), "pb"),             # the PB approximation (the KB form is not implemented)
}


def input_products(u: torch.Tensor, p: int, future: bool = False) -> torch.Tensor:
    """u (B, L, H) -> (B, L, H): prod_{j<p} u_{k-j} (zero where k-j < 0); future: prod_{j=1..p} u_{k+j}."""
    out = torch.ones_like(u)  # (B L H)
    for j in range(p):
        if future:
            s = torch.nn.functional.pad(u[:, j + 1:], (0, 0, 0, j + 1))  # (B L H): u_{k+j+1}
        else:
            s = torch.nn.functional.pad(u[:, :u.shape[1] - j], (0, 0, j, 0))  # (B L H): u_{k-j}
        out = out * s  # (B L H)
    return out


@register_core("liquid_s4", options=OPTIONS, seq_len_option="l_max", doc="Liquid-S4: S4 plus PB input-correlation terms (Hasani et al. 2022)")
class LiquidS4(DPLRSSM):
    """Liquid-S4 core: u (B, L, H) -> y (B, L, C*H); S4 plus the liquid terms (module docstring)."""


    def __init__(self, d_model: int, d_state: int = 64, *, liquid_order: int = 2, liquid_kernel: str = "pb",
                 **s4_options):
        super().__init__(d_model, d_state, **s4_options)
        self.options.update(liquid_order=liquid_order, liquid_kernel=liquid_kernel)
        if liquid_order < 1:
            raise UserError(f"liquid_order must be >= 1; got {liquid_order}")
        if liquid_kernel != "pb":
            raise UserError(f"unknown liquid_kernel {liquid_kernel!r}; valid: pb")
        self.liquid_order = liquid_order

    def liquid_coefficients(self, rate: float = 1.0) -> torch.Tensor:
        """c_p for p = 2..P: (P-1, dC, H) real (dC = 2C if bidirectional: forward copies first)."""
        _, Bbar, C = self._dense_system(None, rate)  # (H N), (dC H N)
        powers = torch.stack([Bbar ** p for p in range(2, self.liquid_order + 1)])  # (P-1 H N)
        return torch.einsum("chn,phn->pch", C, powers).real  # (P-1 dC H)

    def forward(self, u: torch.Tensor, rate: float = 1.0):
        """u (B, L, H) -> y (B, L, C*H)."""
        y = SSMCore.forward(self, u, rate=rate)  # (B L C*H)
        if self.liquid_order > 1:
            B_, L, H = u.shape
            work = torch.float64 if u.dtype == torch.float64 else torch.float32
            with torch.autocast(device_type=u.device.type, enabled=False):
                c = self.liquid_coefficients(rate).to(work)  # (P-1 dC H)
                uw = u.to(work)  # (B L H)
                extra = 0
                for i, p in enumerate(range(2, self.liquid_order + 1)):
                    extra = extra + c[i, :self.channels] * input_products(uw, p)[:, :, None]  # (B L C H)
                    if self.bidirectional:
                        extra = extra + c[i, self.channels:] * input_products(uw, p, future=True)[:, :, None]
                y = y + extra.reshape(B_, L, -1).to(y.dtype)  # (B L C*H)
        return y

    def init_state(self, batch: int):
        """(S4 state (batch, H, N) complex, the last P-1 inputs (batch, H, P-1), newest first)."""
        x = super().init_state(batch)
        return x, torch.zeros(batch, self.d_model, self.liquid_order - 1, dtype=self.log_dt.dtype,
                              device=self.log_dt.device)

    def step(self, u_t: torch.Tensor, state, rate: float = 1.0, L: int | None = None):
        """S4's step plus sum_p c_p u_t u_{t-1} ... u_{t-p+1}. u_t (B, H) -> (B, C*H)."""
        x, past = state
        y, x = super().step(u_t, x, rate=rate, L=L)  # (B C*H)
        if self.liquid_order > 1:
            c = self.liquid_coefficients(rate)  # (P-1 C H)
            prod = u_t  # (B H)
            for i in range(self.liquid_order - 1):
                prod = prod * past[..., i]  # (B H): u_t ... u_{t-i-1}
                y = y + (c[i][None] * prod[:, None]).reshape(u_t.shape[0], -1).to(y.dtype)  # (B C*H)
            past = torch.cat([u_t[..., None], past[..., :-1]], dim=-1)  # (B H P-1)
        return y, (x, past)
