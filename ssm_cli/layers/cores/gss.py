"""GSS, the gated state space unit ("Long Range Language Modeling via Gated State Spaces", Mehta,
Gupta, Cutkosky & Neyshabur 2022; docs/family.md). The core is the whole gated unit, the block's
mixer (``mixer = True``: the backbone adds no activation and no output linear after it):

    v = gelu(x W_v)            (B, L, F)    F = expand * H
    z = gelu(x W_u)            (B, L, S)    S = H / reduction: the SSM runs at reduced width
    y = K * z + D z            (B, L, S)    DSS-exp kernel, Delta fixed (not trained)
    o = ((y W_y) * v) W_o      (B, L, H)

DSS-exp kernel with N complex modes Lambda = -exp(a) + i b, W complex:
    K[s, l] = Re sum_n W[s, n] (exp(Delta Lambda_n) - 1) / Lambda_n exp(l Delta Lambda_n)
Random initialisation (GSS's "no HiPPO"): Re Lambda = -1/2, Im Lambda ~ N(0, 1) (the DSS authors'
``randn`` init), W complex N(0, 1); Lambda, W tagged lr (wd 0). The paper's block is pre-norm
with LayerNorm and no feed-forward layer: ``conf/model/gss.yaml`` sets prenorm; the backbone's
dropout and residual connection stay as for every core. The linear maps have biases (the paper
does not say). Not a plain convolution, so packs run it through its own ``forward``.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import UserError
from ...values import Range
from ..base import SSMCore, register
from ..fftconv import conv, two_sided
from ..kernel import vandermonde
from ..registry import register_core

OPTIONS = {
    "expand": (Range(1, integer=True), 4),      # F = expand * H, the gate's width
    "reduction": (Range(1, integer=True), 4),   # S = H / reduction, the SSM's width
    "dt": (Range(0, lo_open=True), 1.0),        # Delta, fixed
    "bidirectional": ((False, True), False),    # a backward DSS kernel too (the paper is causal)
    "lr": (Range(0), 0.001),                    # learning rate of Lambda and W (weight decay 0)
    "seed": ((int, type(None)), None),
}


@register_core("gss", options=OPTIONS, doc="GSS: gated state space unit, reduced-width DSS kernel (Mehta et al. 2022)")
class GSS(SSMCore):
    """GSS core: x (B, L, H) -> o (B, L, H); see the module docstring for the formula."""

    mixer = True

    def __init__(self, d_model: int, d_state: int = 512, *, expand: int = 4, reduction: int = 4, dt: float = 1.0,
                 bidirectional: bool = False, lr: float = 0.001, seed: int | None = None):
        super().__init__()
        self.options = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        H, N = d_model, d_state
        if H < 1 or N < 1 or H % reduction:
            raise UserError(f"gss needs d_model >= 1 divisible by reduction and d_state >= 1; "
                            f"got d_model={H}, reduction={reduction}, d_state={N}")
        S, Fw = H // reduction, expand * H
        self.d_model, self.d_state, self.channels, self.bidirectional = H, N, 1, bidirectional
        self.d_ssm, self.dt = S, dt
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        if gen is not None:  # the linear maps from the same seed
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                self._linears(H, S, Fw)
        else:
            self._linears(H, S, Fw)
        d = 2 if bidirectional else 1
        register(self, "log_neg_re", torch.full((N,), math.log(0.5)), lr=lr)  # (N): Re Lambda = -exp(.)
        register(self, "im", torch.randn(N, generator=gen), lr=lr)  # (N)
        register(self, "W", torch.randn(d, S, N, 2, generator=gen), lr=lr)  # (d S N 2)
        self.D_ssm = nn.Parameter(torch.randn(1, S, generator=gen))  # (1 S): the SSM's skip
        self.D = None  # no skip around the whole unit (the backbone's residual is it)

    def _linears(self, H: int, S: int, Fw: int) -> None:
        self.in_v = nn.Linear(H, Fw)
        self.in_u = nn.Linear(H, S)
        self.out_y = nn.Linear(S, Fw)
        self.out_o = nn.Linear(Fw, H)

    @property
    def d_output(self) -> int:
        return self.d_model

    def kernel(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """The reduced-width DSS-exp kernel: (1, S, L), or (2, 1, S, L) if bidirectional."""
        lam = torch.complex(-torch.exp(self.log_neg_re), self.im)  # (N)
        dl = lam * (self.dt * rate)  # (N): Delta Lambda
        W = torch.view_as_complex(self.W.contiguous()) * ((torch.exp(dl) - 1) / lam)  # (d S N)
        k = vandermonde(W, dl[None].expand(self.d_ssm, -1), L)  # (d S L)
        return k[:, None] if self.bidirectional else k  # (2 1 S L) or (1 S L)

    def forward(self, x: torch.Tensor, rate: float = 1.0):
        """x (B, L, H) -> o (B, L, H)."""
        B_, L, H = x.shape
        if H != self.d_model:
            raise UserError(f"input has {H} features but the core has d_model={self.d_model}")
        v = F.gelu(self.in_v(x))  # (B L F)
        z = F.gelu(self.in_u(x))  # (B L S)
        work = torch.float64 if z.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=x.device.type, enabled=False):
            k = self.kernel(L, rate).to(work)  # (1 S L) or (2 1 S L)
            if self.bidirectional:
                k = two_sided(k[0], k[1])  # (1 S 2L)
            y = conv(z.to(work), k, self.D_ssm.to(work))  # (B L S)
        o = self.out_o(self.out_y(y.to(v.dtype)) * v)  # (B L H)
        return o
