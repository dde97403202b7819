"""The diagonal SSM core (S4D; DSS through ``disc="dss"``) — FACTS §1.

State: M = N/2 complex modes with conjugate symmetry (output 2·Re); for ``init="ptd"`` the
spectrum is not conjugate-symmetric and all M = N modes are kept (output Re). Parameters:
  log_dt (H,)            step's raw parameter, dt = exp(log_dt) (dt_transform exp) or
                         softplus(log_dt) (softplus); dt ~ logU[dt_min, dt_max]   tagged lr, wd 0
  A_real, A_imag (S, M)  raw parts, A = -f(A_real) + i g(A_imag)             tagged lr, wd 0
  B (S, M, 2)            complex as (re, im); buffer if not trainable_B      tagged lr, wd 0
  C (dC, H, M, 2)        complex normal (variance 1 total); d = 2 if bidirectional (forward
                         and backward C; dt, A, B are shared); global lr unless lr_C is set
  D (C, H)               skip, standard normal; global lr and wd
S = n_ssm copies of (A, B); channel h uses copy h % S (H must be divisible by S).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from ...errors import UserError
from ..base import SSMCore, check_sizes, register
from ..discretize import discretize, dss_scale, zoh_weights
from ..fftconv import two_sided
from ..init import diagonal_init
from ..kernel import vandermonde
from ..options import DIAGONAL
from ..ptd import ptd_init
from ..registry import register_core
from ..transforms import inverse, transform


def _tile(x: torch.Tensor, H: int) -> torch.Tensor:
    """x (S, M) -> (H, M) with row h = x[h % S]; a broadcast view (no copy) when S == 1."""
    if x.shape[0] == H:
        return x  # (H M)
    if x.shape[0] == 1:
        return x.expand(H, -1)  # (H M)
    return x.repeat(H // x.shape[0], 1)  # (H M)


@register_core("s4d", options=DIAGONAL, doc="S4D: diagonal SSM, Vandermonde kernel (Gu et al. 2022)")
class DiagonalSSM(SSMCore):
    """S4D core: u (B, L, H) float -> y (B, L, C*H), the linear SSM with D; no activation.

    Args (all keywords; their valid values and defaults: ``options.DIAGONAL``, the one table):
        d_model: H channels.  d_state: N, the real state size (even; N/2 complex modes).
        init: inv | lin | legs | real | rand | ptd, see init.py / ptd.py.
        disc: zoh | bilinear | dss; dss = ZOH with the DSS softmax normalisation over the L
            positions (so it is not invariant under a rate change: its kernel sums to the same
            value at every resolution).
        real_transform, imag_transform: exp | relu | sigmoid | softplus | none:
            A = -f(A_real) + i g(A_imag).
        dt_transform: exp | softplus: dt = f(log_dt); the same initial dt either way.
        real_random, imag_random, real_scale, imag_scale: further init ablations.
        trainable_B: False registers B as a buffer.  B_init: auto | ones | random
            (auto: HiPPO's B projected on the eigenvectors for legs/ptd, else ones).
        bidirectional: a second C for a backward-in-time kernel, summed.
        channels: output copies C.  n_ssm (None = H): copies of (A, B).
        dt_min, dt_max: log dt ~ U[log dt_min, log dt_max].
        lr: lr of dt, A, B (wd 0).  lr_C: None = C in the global group; a float gives C that
            lr and wd 0.
        block (None = automatic): Vandermonde block length.  seed (None: torch's RNG): init seed.
    """

    def __init__(self, d_model: int, d_state: int, *, init: str, disc: str, real_transform: str,
                 imag_transform: str, dt_transform: str, real_random: bool, imag_random: bool, real_scale: float,
                 imag_scale: float, trainable_B: bool, B_init: str, bidirectional: bool, channels: int,
                 n_ssm: int | None, dt_min: float, dt_max: float, lr: float, lr_C: float | None,
                 block: int | None, seed: int | None):
        super().__init__()
        self.options = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        H, N = d_model, d_state
        S = check_sizes("the diagonal core (N/2 complex modes)", H, N, channels, n_ssm, dt_min, dt_max)
        if block is not None and block < 1:
            raise UserError(f"block must be >= 1 or None; got {block}")
        self.d_model, self.d_state, self.channels, self.n_ssm = H, N, channels, S
        self.init, self.disc, self.bidirectional, self.block = init, disc, bidirectional, block
        self.real_transform, self.imag_transform = real_transform, imag_transform
        if dt_transform not in ("exp", "softplus"):
            raise UserError(f"unknown dt_transform {dt_transform!r}; valid: exp, softplus")
        self.dt_transform = dt_transform
        rng = np.random.default_rng(seed) if seed is not None else np.random.default_rng(
            int(torch.randint(0, 2**62, (1,)).item()))
        n_dir = 2 if bidirectional else 1
        A, B = diagonal_init(init, N, S, real_random=real_random, imag_random=imag_random,
                             real_scale=real_scale, imag_scale=imag_scale, rng=rng)  # (S M)
        if B_init == "ones" or (B_init == "auto" and B is None):
            B = np.ones_like(A)
        elif B_init == "random":
            B = (rng.standard_normal(A.shape) + 1j * rng.standard_normal(A.shape)) / math.sqrt(2)
        re = np.minimum(A.real, -1e-4)  # A's real part must stay strictly negative
        a_re = inverse(-re, real_transform, "real parts -Re(A)")
        a_im = inverse(A.imag, imag_transform, "imaginary parts Im(A)")
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        log_dt = torch.rand(H, generator=gen) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)  # (H)
        if dt_transform == "softplus":  # the same dt, stored as softplus^-1(dt)
            log_dt = torch.from_numpy(inverse(torch.exp(log_dt).double().numpy(), "softplus")).float()  # (H)
        self.conj = init != "ptd"
        M = A.shape[-1]
        register(self, "log_dt", log_dt, lr=lr)  # (H)
        register(self, "A_real", torch.tensor(a_re, dtype=torch.float32), lr=lr)  # (S M)
        register(self, "A_imag", torch.tensor(a_im, dtype=torch.float32), lr=lr)  # (S M)
        B_t = torch.view_as_real(torch.tensor(B, dtype=torch.complex64))  # (S M 2)
        register(self, "B", B_t, trainable=trainable_B, lr=lr)  # (S M 2)
        C_t = torch.randn(n_dir * channels, H, M, dtype=torch.complex64, generator=gen)  # (dC H M)
        if not self.conj:  # PTD: C~ = C V
            C_t = C_t @ torch.tensor(ptd_init(N)["V"], dtype=torch.complex64)  # (dC H N)
        register(self, "C", torch.view_as_real(C_t), lr=lr_C)  # (dC H M 2)
        self._init_D(gen)

    # ---- continuous and discrete parameters -------------------------------------------------
    def eigenvalues(self) -> torch.Tensor:
        """Continuous-time A after the transforms: (S, M) complex."""
        return torch.complex(-transform(self.A_real, self.real_transform),
                             transform(self.A_imag, self.imag_transform))  # (S M)

    def _discrete(self, rate: float = 1.0, L: int | None = None):
        """(log_Abar (H, M), W (dC, H, M)) with W = C * Bbar (x 2 for a conjugate pair, x the DSS scale)."""
        H = self.d_model
        A = _tile(self.eigenvalues(), H)  # (H M), channel h uses copy h % S
        B = _tile(torch.view_as_complex(self.B.contiguous()), H)  # (H M)
        dt = transform(self.log_dt, self.dt_transform)  # (H)
        C = torch.view_as_complex(self.C.contiguous())  # (dC H M)
        return self._discretize(A, dt, B, C, rate, L)

    def _discretize(self, A, dt, B, C, rate: float = 1.0, L: int | None = None):
        """The discretisation of this core's kind for per-channel A, B (H', M), dt (H'), C (dC, H', M).

        H' is d_model for the core itself, or the channels of several cores of one
        ``kernel_batch_key`` at once (``batch_conv_kernel``)."""
        if rate != 1.0:  # (a multiply by 1.0 would still be a kernel)
            dt = dt * rate  # (H')
        scale = 2.0 if self.conj else 1.0
        if self.disc == "zoh":  # one autograd node, hand-written backward (discretize.ZOHWeights)
            return zoh_weights(A, dt, B, C, scale)  # (H' M), (dC H' M)
        log_Abar, Bbar = discretize(self.disc, A, dt, B)  # (H' M), (H' M)
        if self.disc == "dss":
            if L is None:
                raise UserError("disc='dss' normalises the kernel by its length: pass L")
            Bbar = Bbar * dss_scale(log_Abar, L)  # (H' M)
        return log_Abar, scale * C * Bbar  # (H' M), (dC H' M)

    def kernel_batch_key(self) -> tuple:
        """Cores with equal keys compute their kernels by the same formula, so a pack computes
        them in one pass over all their channels (``batch_conv_kernel``)."""
        return ("s4d", self.d_model, self.A_real.shape[-1], self.disc, self.real_transform, self.imag_transform,
                self.dt_transform, self.conj, self.bidirectional, self.channels, self.block, self.log_dt.dtype,
                self.log_dt.device)

    def kernel(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """Real kernel: (C, H, L), or (2, C, H, L) = (forward, backward) if bidirectional.

        The two directions share dt, A and B and differ in C (as in the S4 reference).
        """
        log_Abar, W = self._discrete(rate, L)  # (H M), (dC H M)
        k = vandermonde(W, log_Abar, L, self.block)  # (dC H L)
        return k.reshape(2, self.channels, *k.shape[1:]) if self.bidirectional else k

    @classmethod
    def batch_conv_kernel(cls, cores: list[DiagonalSSM], L: int, rate: float = 1.0) -> torch.Tensor:
        """``conv_kernel`` of several cores of one ``kernel_batch_key``, in one pass: (C, K*H, L or 2L).

        Equal to ``torch.cat([c.conv_kernel(L, rate) for c in cores], dim=1)``; the raw parameters are
        concatenated first, so the transforms, the discretisation and the Vandermonde product run once
        over all K*H channels instead of K times (a pack's kernel generation is K small launches less).
        """
        c0 = cores[0]
        H = c0.d_model

        def cat(get, dim: int = 0) -> torch.Tensor:
            return torch.cat([get(c) for c in cores], dim=dim)

        A = torch.complex(-transform(cat(lambda c: _tile(c.A_real, H)), c0.real_transform),
                          transform(cat(lambda c: _tile(c.A_imag, H)), c0.imag_transform))  # (KH M)
        B = cat(lambda c: _tile(torch.view_as_complex(c.B.contiguous()), H))  # (KH M)
        dt = transform(cat(lambda c: c.log_dt), c0.dt_transform)  # (KH)
        C = torch.view_as_complex(cat(lambda c: c.C, dim=1).contiguous())  # (dC KH M)
        log_Abar, W = c0._discretize(A, dt, B, C, rate, L)  # (KH M), (dC KH M)
        k = vandermonde(W, log_Abar, L, c0.block)  # (dC KH L)
        if not c0.bidirectional:
            return k  # (C KH L)
        k = k.reshape(2, c0.channels, *k.shape[1:])  # (2 C KH L)
        return two_sided(k[0], k[1])  # (C KH 2L)

    # ---- recurrent view -----------------------------------------------------------------------
    def init_state(self, batch: int) -> torch.Tensor:
        """Zero state (batch, H, M) complex (complex128 if the core is float64)."""
        if self.bidirectional:
            raise UserError("a bidirectional core has no recurrent view")
        dtype = torch.complex128 if self.log_dt.dtype == torch.float64 else torch.complex64
        return torch.zeros(batch, self.d_model, self.A_real.shape[-1], dtype=dtype, device=self.log_dt.device)

    def step(self, u_t: torch.Tensor, state: torch.Tensor, rate: float = 1.0, L: int | None = None):
        """One step: x = Abar x + Bbar u_t; y = 2 Re(C x) + D u_t (Re(C x) for ptd).

        u_t: (B, H) -> y_t: (B, C*H); state (B, H, M) complex. ``L`` is needed for disc='dss'
        (its kernel depends on the sequence length).
        """
        if self.bidirectional:
            raise UserError("a bidirectional core has no recurrent view")
        log_Abar, W = self._discrete(rate, L)  # (H M), (C H M)
        state = torch.exp(log_Abar) * state + u_t[..., None].to(state.dtype)  # (B H M); Bbar folded into W
        y = torch.einsum("chm,bhm->bch", W.to(state.dtype), state).real  # (B C H)
        y = y + self.D[None] * u_t[:, None, :]  # (B C H)
        return y.reshape(u_t.shape[0], -1).to(u_t.dtype), state
