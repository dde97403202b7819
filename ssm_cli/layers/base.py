"""What every SSM core shares: the tagged-parameter helper, the forward pass, the D skip.

Parameters that need their own optimizer settings carry a ``_optim`` dict
({"lr": ..., "weight_decay": ...}); ``optim.param_groups`` reads it.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import UserError
from .fftconv import conv, two_sided


def register(module: nn.Module, name: str, value: torch.Tensor, trainable: bool = True,
             lr: float | None = None, weight_decay: float = 0.0) -> None:
    """Register ``value`` as a parameter (tagged with lr/wd when ``lr`` is given) or, if not trainable, a buffer."""
    if not trainable:
        module.register_buffer(name, value)
        return
    p = nn.Parameter(value)
    if lr is not None:
        p._optim = {"lr": float(lr), "weight_decay": float(weight_decay)}
    module.register_parameter(name, p)


def check_sizes(core: str, d_model: int, d_state: int, channels: int, n_ssm: int | None,
                dt_min: float, dt_max: float) -> int:
    """The checks every core's constructor makes; returns S, the number of (A, B) copies.

    ``core`` names the core in the odd-d_state message (e.g. "the S4 core")."""
    if d_state % 2:
        raise UserError(f"d_state must be even for {core}; got {d_state}")
    if d_model < 1 or channels < 1:
        raise UserError(f"d_model and channels must be >= 1; got d_model={d_model}, channels={channels}")
    S = d_model if n_ssm is None else n_ssm
    if S < 1 or d_model % S:
        raise UserError(f"n_ssm={n_ssm} must divide d_model={d_model}")
    if not 0 < dt_min <= dt_max:
        raise UserError(f"need 0 < dt_min <= dt_max; got dt_min={dt_min}, dt_max={dt_max}")
    return S


class SSMCore(nn.Module):
    """Base class: subclasses implement ``kernel(L, rate)`` -> (C, H, L) or, bidirectional, (2, C, H, L).

    Attributes: d_model (H), channels (C), bidirectional, D (C, H) skip parameter.
    """

    d_model: int
    channels: int
    bidirectional: bool
    compile_spectra: bool = False  # FFT convolution's spectral products torch.compile'd (CUDA; fftconv.conv)
    # True: ``forward`` is exactly conv(u, conv_kernel) + D u, so a pack may convolve the kernels of
    # several cores itself (``packed.PackedModel``). False: the core computes more than that
    # (Liquid-S4's input products, GSS's gated unit) and must be run through its own ``forward``;
    # ``train/pack.py`` then gives its runs packs of their own.
    kernel_only: bool = True
    # True: the core's output (B, L, H) is the block's whole mixer (GSS brings its projections and
    # gate): the block applies no activation and no output linear after it (``backbone.Block``).
    mixer: bool = False

    def _init_D(self, generator: torch.Generator | None = None) -> None:
        self.D = nn.Parameter(torch.randn(self.channels, self.d_model, generator=generator))  # (C H)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())

    @property
    def d_output(self) -> int:
        """Features of the output: channels * d_model."""
        return self.channels * self.d_model

    def forward(self, u: torch.Tensor, rate: float = 1.0, residual: bool = False):
        """u: (B, L, H) float -> y: (B, L, C*H), same dtype as u (kernel and FFT in float32 or float64).

        y[..., c*H + h] = (K_c,h * u_h) + D[c,h] u_h: the linear SSM, no activation.
        ``residual``: returns (y, u'), u' equal to u, for the block's residual connection (u' in
        place of u: its gradient joins the convolution's in one pass, ``fftconv.conv``).
        """
        B_, L, H = u.shape
        if H != self.d_model:
            raise UserError(f"input has {H} features but the core has d_model={self.d_model}")
        dtype = u.dtype
        work = torch.float64 if dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=u.device.type, enabled=False):
            k = self.conv_kernel(L, rate=rate).to(work)  # (C H L) or two-sided (C H 2L)
            # one fused FFT convolution in the (B, L, H) layout, D folded into tap 0 (fftconv.py)
            if residual and dtype == work:
                y, u = conv(u, k, self.D.to(work), compiled=self.compile_spectra, residual=True)  # (B L C*H)
                return y, u
            y = conv(u.to(work), k, self.D.to(work), compiled=self.compile_spectra)  # (B L C*H)
        return (y.to(dtype), u) if residual else y.to(dtype)

    def conv_kernel(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """The kernel ``forward`` convolves with: (C, H, L) causal or, bidirectional, the circular
        (C, H, 2L) kernel of ``fftconv.two_sided``. Subclasses may build the latter directly."""
        k = self.kernel(L, rate=rate)  # (C H L) or (2 C H L)
        if not self.bidirectional:
            return k
        k_fwd, k_back = k.unbind(0)  # (C H L) each; backward: one stack (indexing: two zero-filled scatters)
        return two_sided(k_fwd, k_back)  # (C H 2L)
