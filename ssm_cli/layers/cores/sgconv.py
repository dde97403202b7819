"""SGConv, the structured global convolution ("What Makes Convolutional Models Great on Long
Sequence Modeling?", Li, Cai et al. 2022; docs/family.md): a kernel made of S sub-kernels of d
parameters each, stretched to geometrically growing lengths and decayed with the scale.

    k_i  (d,) parameters, i = 0 .. S-1;  up_i = linear interpolation of k_i by 2^max(0, i-1)
    K    = concat_i( m^(S-1-i) up_i )   of length d 2^(S-1)   (m = decay, per channel)
    K   /= ||K_init||                    (per channel; the norm of the initial kernel, a buffer)
then cut (or zero-padded) to the sequence length L. S = 1 + ceil(log2(l_max / d)) unless n_scales
is given, so the kernel covers l_max. m = linspace(decay_min, decay_max, H) (the authors'
defaults 2, 2: scale i is weighted by 2^(S-1-i) relative to the last, i.e. a halving per scale
towards the long lags). Sub-kernels ~ N(0, 1), tagged lr (wd 0); D (C, H) global.
No recurrence; the kernel is defined per sample, so ``rate`` must be 1.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import UserError
from ...values import Range
from ..base import SSMCore, register
from ..registry import register_core
from .mega_ema import check_rate

OPTIONS = {
    "kernel_dim": (Range(1, integer=True), 64),         # d, parameters per sub-kernel
    "n_scales": (Range(1, integer=True, none=True), None),  # S (None: enough to cover l_max)
    "l_max": (Range(1, integer=True, none=True), None),  # the length the kernel covers (None: the data's)
    "decay_min": (Range(0, lo_open=True), 2.0),         # m over the channels: linspace(decay_min, decay_max)
    "decay_max": (Range(0, lo_open=True), 2.0),
    "bidirectional": ((False, True), False),
    "channels": (Range(1, integer=True), 1),
    "lr": (Range(0), 0.001),                             # learning rate of the sub-kernels (wd 0)
    "seed": ((int, type(None)), None),
}


def n_scales_for(l_max: int, kernel_dim: int) -> int:
    """The number of scales whose concatenated kernel d 2^(S-1) covers l_max."""
    return 1 + max(0, math.ceil(math.log2(l_max / kernel_dim)))


@register_core("sgconv", options=OPTIONS, seq_len_option="l_max", doc="SGConv: multiscale decayed global convolution kernel (Li et al. 2022)")
class SGConv(SSMCore):
    """SGConv core: u (B, L, H) -> y (B, L, C*H); see the module docstring for the formula."""

    def __init__(self, d_model: int, d_state: int = 64, *, kernel_dim: int = 64, n_scales: int | None = None,
                 l_max: int | None = None, decay_min: float = 2.0, decay_max: float = 2.0,
                 bidirectional: bool = False, channels: int = 1, lr: float = 0.001, seed: int | None = None):
        super().__init__()
        self.options = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        H = d_model
        if n_scales is None:
            if l_max is None:
                raise UserError("sgconv needs l_max (the sequence length) or n_scales")
            n_scales = n_scales_for(l_max, kernel_dim)
        if H < 1 or channels < 1 or kernel_dim < 1 or n_scales < 1:
            raise UserError(f"d_model, channels, kernel_dim, n_scales must be >= 1; got {H}, {channels}, "
                            f"{kernel_dim}, {n_scales}")
        self.d_model, self.channels, self.bidirectional = H, channels, bidirectional
        self.kernel_dim, self.n_scales = kernel_dim, n_scales
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        d = 2 if bidirectional else 1
        self.sub_kernels = nn.Module()  # holds k_0 .. k_{S-1}, each (dC H d)
        for i in range(n_scales):
            register(self.sub_kernels, f"k{i}", torch.randn(d * channels, H, kernel_dim, generator=gen), lr=lr)
        self.register_buffer("decay", torch.linspace(decay_min, decay_max, H).view(1, H, 1))  # (1 H 1)
        self.register_buffer("norm", torch.ones(d * channels, H, 1))  # (dC H 1)
        with torch.no_grad():
            self.norm.copy_(self.full_kernel().norm(dim=-1, keepdim=True))  # (dC H 1)
        self._init_D(gen)

    def full_kernel(self) -> torch.Tensor:
        """The concatenated, decayed kernel before normalisation: (dC, H, d 2^(S-1))."""
        S, parts = self.n_scales, []
        for i in range(S):
            k = getattr(self.sub_kernels, f"k{i}")  # (dC H d)
            if i > 1:
                k = F.interpolate(k, scale_factor=2 ** (i - 1), mode="linear")  # (dC H d 2^(i-1))
            parts.append(k * self.decay ** (S - 1 - i))
        return torch.cat(parts, dim=-1)  # (dC H d 2^(S-1))

    def kernel(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """K (C, H, L), or (2, C, H, L) = (forward, backward) if bidirectional."""
        check_rate("sgconv", rate)
        k = self.full_kernel() / self.norm  # (dC H L0)
        k = k[..., :L] if k.shape[-1] >= L else F.pad(k, (0, L - k.shape[-1]))  # (dC H L)
        return k.reshape(2, self.channels, *k.shape[1:]) if self.bidirectional else k
