"""DLR, the diagonal linear RNN ("Simplifying and Understanding State Space Models with Diagonal
Linear RNNs", Gupta, Mehta & Berant 2022; docs/family.md): no discretisation, the kernel comes from
the eigenvalues directly.

N complex modes lambda_n = exp(Lambda_n), shared by all H channels (as in the authors' layer):
    x_t = diag(lambda) x_{t-1} + 1 u_t,   y_t = Re(W x_t) + D u_t      (``step``)
    K[c, h, l] = Re sum_n W[c, h, n] lambda_n^l                          (``kernel``)
Lambda = -s^2 + i theta (s stored, so Re Lambda stays <= 0). Initialisation ("omega"):
Re Lambda_n = -dt_n / 2 with dt_n ~ logU[dt_min, dt_max], theta_n = 2 pi n / N; ("randn"):
theta_n ~ N(0, 1) mod 2 pi. W complex with N(0, 1/N^2) parts.
  s, theta (N,)      tagged lr, wd 0
  W (dC, H, N, 2)    tagged lr_W, wd 0      (d = 2 if bidirectional: forward and backward W)
  D (C, H)           global
Here d_state is N, the number of complex modes (not 2x as for S4D). Discrete-time: ``rate`` must be 1.
"""
from __future__ import annotations

import math

import torch

from ...errors import UserError
from ...values import Range
from ..base import SSMCore, register
from ..kernel import vandermonde
from ..registry import register_core
from .mega_ema import check_rate

OPTIONS = {
    "init": (("omega", "randn"), "omega"),
    "dt_min": (Range(0, lo_open=True), 0.0001),  # Re Lambda_n = -dt_n / 2, dt_n ~ logU[dt_min, dt_max]
    "dt_max": (Range(0, lo_open=True), 0.1),
    "bidirectional": ((False, True), False),
    "channels": (Range(1, integer=True), 1),
    "lr": (Range(0), 0.0001),                    # learning rate of Lambda (weight decay 0)
    "lr_W": (Range(0), 0.0001),                  # learning rate of W (weight decay 0)
    "block": (Range(1, integer=True, none=True), None),  # Vandermonde block length (None: automatic)
    "seed": ((int, type(None)), None),
}


@register_core("dlr", options=OPTIONS, doc="DLR: diagonal linear RNN, kernel from the eigenvalues (Gupta et al. 2022)")
class DLR(SSMCore):
    """DLR core: u (B, L, H) -> y (B, L, C*H); see the module docstring for the formula."""

    def __init__(self, d_model: int, d_state: int = 1024, *, init: str = "omega", dt_min: float = 0.0001,
                 dt_max: float = 0.1, bidirectional: bool = False, channels: int = 1, lr: float = 0.0001,
                 lr_W: float = 0.0001, block: int | None = None, seed: int | None = None):
        super().__init__()
        self.options = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        H, N = d_model, d_state
        if H < 1 or N < 1 or channels < 1:
            raise UserError(f"d_model, d_state and channels must be >= 1; got {H}, {N}, {channels}")
        if not 0 < dt_min <= dt_max:
            raise UserError(f"need 0 < dt_min <= dt_max; got dt_min={dt_min}, dt_max={dt_max}")
        self.d_model, self.d_state, self.channels, self.bidirectional, self.block = H, N, channels, bidirectional, block
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        dt = torch.exp(math.log(dt_min) + torch.rand(N, generator=gen) * (math.log(dt_max) - math.log(dt_min)))  # (N)
        if init == "omega":
            theta = 2 * math.pi * torch.arange(N, dtype=torch.float32) / N  # (N)
        else:
            theta = torch.randn(N, generator=gen) % (2 * math.pi)  # (N)
        d = 2 if bidirectional else 1
        register(self, "s", torch.sqrt(0.5 * dt), lr=lr)  # (N): Re Lambda = -s^2
        register(self, "theta", theta, lr=lr)  # (N)
        register(self, "W", torch.randn(d * channels, H, N, 2, generator=gen) / N, lr=lr_W)  # (dC H N 2)
        self._init_D(gen)

    def log_lambda(self) -> torch.Tensor:
        """Lambda = log of the eigenvalues: (N,) complex."""
        return torch.complex(-self.s ** 2, self.theta)  # (N)

    def kernel(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """K (C, H, L), or (2, C, H, L) = (forward, backward) if bidirectional."""
        check_rate("dlr", rate)
        W = torch.view_as_complex(self.W.contiguous())  # (dC H N)
        log_lam = self.log_lambda()[None].expand(self.d_model, -1)  # (H N)
        k = vandermonde(W, log_lam, L, self.block)  # (dC H L)
        return k.reshape(2, self.channels, *k.shape[1:]) if self.bidirectional else k

    def init_state(self, batch: int) -> torch.Tensor:
        """Zero state (batch, H, N) complex."""
        if self.bidirectional:
            raise UserError("a bidirectional core has no recurrent view")
        dtype = torch.complex128 if self.s.dtype == torch.float64 else torch.complex64
        return torch.zeros(batch, self.d_model, self.d_state, dtype=dtype, device=self.s.device)

    def step(self, u_t: torch.Tensor, state: torch.Tensor, rate: float = 1.0):
        """x = lambda x + u_t; y = Re(W x) + D u_t. u_t (B, H) -> (B, C*H)."""
        if self.bidirectional:
            raise UserError("a bidirectional core has no recurrent view")
        check_rate("dlr", rate)
        lam = torch.exp(self.log_lambda()).to(state.dtype)  # (N)
        state = lam * state + u_t[..., None].to(state.dtype)  # (B H N)
        W = torch.view_as_complex(self.W.contiguous()).to(state.dtype)  # (C H N)
        y = torch.einsum("chn,bhn->bch", W, state).real + self.D[None] * u_t[:, None]  # (B C H)
        return y.reshape(u_t.shape[0], -1).to(u_t.dtype), state
