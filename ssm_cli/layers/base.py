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
    """Base class of every core: u (B, L, H) float -> y (B, L, C*H), the linear SSM incl. D.

    Attributes: d_model (H), channels (C), bidirectional, D (C, H) skip parameter (convolutions).

    Two kinds of cores:
    - a per-channel (depthwise) convolution implements ``kernel(L, rate)`` -> (C, H, L) or,
      bidirectional, (2, C, H, L), and keeps this class's ``forward`` (FFT convolution with D in
      tap 0). Then ``is_depthwise_conv`` is True and a pack convolves the members' kernels in one
      FFT (``backbone``); cores whose ``kernel_batch_key`` agree even compute their kernels in one
      pass (``batch_conv_kernel``).
    - any other core (e.g. a MIMO SSM computed by a scan) overrides ``forward``; a pack runs that
      ``forward`` on the member's slice of the features.
    """

    d_model: int
    channels: int
    bidirectional: bool
    # True: the core's output (B, L, H) is the block's whole mixer (GSS brings its projections and
    # gate): the block applies no activation and no output linear after it (``backbone.Block``).
    mixer: bool = False

    def _init_D(self, generator: torch.Generator | None = None) -> None:
        self.D = nn.Parameter(torch.randn(self.channels, self.d_model, generator=generator))  # (C H)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in getattr(self, "options", {}).items())

    @property
    def d_output(self) -> int:
        """Features of the output: channels * d_model."""
        return self.channels * self.d_model

    @property
    def is_depthwise_conv(self) -> bool:
        """True when ``forward`` is this class's: y = conv(u, conv_kernel(L, rate)) + D u exactly,
        so the backbone may compute that convolution itself (for several members in one FFT)."""
        return type(self).forward is SSMCore.forward

    def forward(self, u: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """u: (B, L, H) float -> y: (B, L, C*H), same dtype as u (kernel and FFT in float32 or float64).

        y[..., c*H + h] = (K_c,h * u_h) + D[c,h] u_h: the linear SSM, no activation.
        """
        B_, L, H = u.shape
        if H != self.d_model:
            raise UserError(f"input has {H} features but the core has d_model={self.d_model}")
        dtype = u.dtype
        work = torch.float64 if dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=u.device.type, enabled=False):
            k = self.conv_kernel(L, rate=rate).to(work)  # (C H L) or two-sided (C H 2L)
            y = conv(u.to(work), k, self.D.to(work))  # (B L C*H), D folded into tap 0 (fftconv.py)
        return y.to(dtype)

    def conv_kernel(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """The kernel ``forward`` convolves with: (C, H, L) causal or, bidirectional, the circular
        (C, H, 2L) kernel of ``fftconv.two_sided``. Subclasses may build the latter directly."""
        k = self.kernel(L, rate=rate)  # (C H L) or (2 C H L)
        if not self.bidirectional:
            return k
        k_fwd, k_back = k.unbind(0)  # (C H L) each; backward: one stack (indexing: two zero-filled scatters)
        return two_sided(k_fwd, k_back)  # (C H 2L)

    def kernel_batch_key(self):
        """Cores with equal keys other than None compute their kernels together
        (``batch_conv_kernel``); None (the default): each core computes its own."""
        return None

    @classmethod
    def batch_conv_kernel(cls, cores: list, L: int, rate: float = 1.0) -> torch.Tensor:
        """The ``conv_kernel`` s of ``cores`` (one ``kernel_batch_key``) side by side: (C, K*H, L')."""
        return torch.cat([c.conv_kernel(L, rate=rate) for c in cores], dim=1)


def conv_kernels(cores: list, L: int, rate: float = 1.0) -> torch.Tensor:
    """Depthwise-convolution cores' kernels side by side, in order: (C, K*H, L').

    Runs of consecutive cores with one ``kernel_batch_key`` are computed in one pass."""
    runs: list[list] = []  # [key, cores] runs of consecutive cores of one key
    for c in cores:
        key = c.kernel_batch_key()
        if runs and key is not None and runs[-1][0] == key:
            runs[-1][1].append(c)
        else:
            runs.append([key, [c]])
    parts = [type(cs[0]).batch_conv_kernel(cs, L, rate) if len(cs) > 1 else cs[0].conv_kernel(L, rate=rate)
             for _, cs in runs]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
