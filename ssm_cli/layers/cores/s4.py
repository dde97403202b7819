"""The S4 core: diagonal plus low-rank (DPLR) A, kernel by Cauchy sums + Woodbury at the roots of unity.

State: the N-dimensional HiPPO system (LegS, LegT or FouT) in the eigenbasis of its normal part,
stored as M = N/2 modes plus their conjugates:
    A = diag(Lambda) - P P^*   (full: Lambda_f = [Lambda, conj Lambda], P_f = [P, conj P], rank r)
Bilinear discretisation. Parameters (S = n_ssm copies, C = channels, d = 2 if bidirectional):
  log_dt (H,)            dt = exp(log_dt) or softplus(log_dt) (dt_transform)   tagged lr, wd 0
  A_real, A_imag (S, M)  Lambda = -f(A_real) + i A_imag                      tagged lr, wd 0
  P (r, S, M, 2)         low-rank factor                                     tagged lr, wd 0
  B (S, M, 2)            V^* B_hippo, Im B clipped to [-B_clip, B_clip]; buffer if not
                         trainable_B                                         tagged lr, wd 0
  C (dC, H, M, 2)        forward (and backward) C, sharing dt, A, B; trained as
                         C~ = C (I - Abar^L) (the S4 paper's choice: the kernel of length
                         L needs no power of Abar); global lr unless lr_C is set. C_init "C":
                         C is complex normal and C~ = C (I - Abar^l_max) with the initial
                         dt, A, P, B (the reference's); "C_tilde": C~ itself complex normal
  D (C, H)

Kernel (the S4 algorithm): with a = (2/dt)(1 - w), b = 1 + w at w_k = exp(-2 pi i k / L),
    Khat(w) = 2 C~ (a - b A)^-1 B
            = 2 [k_CB - b k_CP (I + b k_PP)^-1 k_PB],  k_XY = sum_n X_n Y_n / (a - b Lambda_n),
then K = irfft(Khat). The form avoids the 1/(1 + w) pole at w = -1. The Cauchy sums are computed
in chunks of frequencies (checkpointed under autograd) so the (H, L/2, N) table never exists whole.
``kernel_reference`` is the slow dense computation used by the tests.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from ...errors import UserError
from ..base import SSMCore, check_sizes, register
from ..hippo import MEASURES, nplr
from ..options import COMMON
from ..registry import register_core
from ..transforms import inverse, transform

# complex entries of one (H, chunk, N) Cauchy table: small on CPU (cache, RSS), large on GPU (launches)
_CHUNK_ELEMS = {"cpu": 1 << 20, "cuda": 1 << 23}


_NONE = type(None)
OPTIONS = {
    **COMMON,
    "init": (MEASURES, "legs"),
    "dt_transform": (("exp", "softplus"), "softplus"),  # dt = f(log_dt); softplus: the reference pipeline's
    "B_clip": ((float, int, _NONE), 2.0),         # |Im B| bound after the projection, the reference's (None: unclipped)
    "C_init": (("C", "C_tilde"), "C_tilde"),      # C: C ~ N, C~ = C (I - Abar^l_max) (reference)
    "l_max": ((int, _NONE), None),                # length of the stored C~ (model.l_max null: the data's)
}


@register_core("s4", options=OPTIONS, doc="S4: diagonal plus low-rank (DPLR) HiPPO SSM, Cauchy kernel (Gu et al. 2022)",
               seq_len_option="l_max")
class DPLRSSM(SSMCore):
    """S4 core: u (B, L, H) float -> y (B, L, C*H), the linear SSM with D; no activation.

    Args (all keywords; their valid values and defaults: ``OPTIONS``, the one table):
        d_model: H.  d_state: N (even).  init: legs | legt | fout, the HiPPO matrix.
        real_transform: exp | relu | sigmoid | softplus | none for Re(Lambda)
            (LegT/FouT have Re(Lambda) = 0, stored as -1e-4).
        trainable_B, bidirectional, channels, n_ssm (None = H), dt_min, dt_max, lr (dt, Lambda,
            P, B with wd 0), lr_C (None = global), seed: as for the S4D core.
        dt_transform: exp | softplus: dt = f(log_dt); the same initial dt either way.
        B_clip: Im B clipped to [-B_clip, B_clip] after the projection on the eigenvectors
            (None: unclipped).
        C_init: C | C_tilde: which of C and C~ is drawn complex normal; "C" needs l_max, the
            length whose C~ is stored (a run passes the data's sequence length: the core
            registers ``l_max`` as its ``seq_len_option``).
    """

    def __init__(self, d_model: int, d_state: int, *, init: str, real_transform: str, trainable_B: bool,
                 bidirectional: bool, channels: int, n_ssm: int | None, dt_min: float, dt_max: float, lr: float,
                 lr_C: float | None, seed: int | None, dt_transform: str, B_clip: float | None, C_init: str,
                 l_max: int | None):
        super().__init__()
        self.options = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        H, N = d_model, d_state
        S = check_sizes("the S4 core", H, N, channels, n_ssm, dt_min, dt_max)
        self.d_model, self.d_state, self.channels, self.n_ssm = H, N, channels, S
        self.init, self.bidirectional, self.real_transform = init, bidirectional, real_transform
        if dt_transform not in ("exp", "softplus"):
            raise UserError(f"unknown dt_transform {dt_transform!r}; valid: exp, softplus")
        if C_init not in ("C", "C_tilde"):
            raise UserError(f"unknown C_init {C_init!r}; valid: C, C_tilde")
        if C_init == "C" and (l_max is None or l_max < 1):
            raise UserError(f"C_init 'C' needs l_max, the sequence length (a positive integer); got {l_max!r}")
        if B_clip is not None and B_clip <= 0:
            raise UserError(f"B_clip must be > 0 or None; got {B_clip!r}")
        self.dt_transform = dt_transform
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        d, M = (2 if bidirectional else 1), N // 2
        lam, P, B, _ = nplr(init, N)  # (M), (r M), (M)
        if B_clip is not None:
            B = B.real + 1j * np.clip(B.imag, -B_clip, B_clip)  # (M)
        self.rank = P.shape[0]
        a_re = inverse(-np.minimum(lam.real, -1e-4), real_transform, "real parts -Re(Lambda)")
        log_dt = torch.rand(H, generator=gen) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)  # (H)
        if dt_transform == "softplus":  # the same dt, stored as softplus^-1(dt)
            log_dt = torch.from_numpy(inverse(torch.exp(log_dt).double().numpy(), "softplus")).float()  # (H)
        register(self, "log_dt", log_dt, lr=lr)  # (H)
        register(self, "A_real", torch.tensor(a_re, dtype=torch.float32).repeat(S, 1), lr=lr)  # (S M)
        register(self, "A_imag", torch.tensor(lam.imag, dtype=torch.float32).repeat(S, 1), lr=lr)  # (S M)
        P_t = torch.view_as_real(torch.tensor(P, dtype=torch.complex64))  # (r M 2)
        register(self, "P", P_t[:, None].repeat(1, S, 1, 1).contiguous(), lr=lr)  # (r S M 2)
        B_t = torch.view_as_real(torch.tensor(B, dtype=torch.complex64))  # (M 2)
        register(self, "B", B_t.repeat(S, 1, 1), trainable=trainable_B, lr=lr)  # (S M 2)
        C_t = torch.randn(d * channels, H, M, dtype=torch.complex64, generator=gen)  # (dC H M)
        register(self, "C", torch.view_as_real(C_t), lr=lr_C)  # (dC H M 2)
        if C_init == "C":
            with torch.no_grad():
                self.C.copy_(torch.view_as_real(self.c_tilde(C_t, l_max).to(C_t.dtype)))
        self._init_D(gen)

    def dt(self, rate: float = 1.0) -> torch.Tensor:
        """The step (H,) at ``rate``."""
        f = torch.exp if self.dt_transform == "exp" else torch.nn.functional.softplus
        return f(self.log_dt) * rate  # (H)

    @torch.no_grad()
    def c_tilde(self, C: torch.Tensor, L: int) -> torch.Tensor:
        """C~ = C (I - Abar^L) for C (dC, H, M) complex (the kept modes; their conjugates implied),
        with the current dt, Lambda, P, B; computed in complex128. Returns (dC, H, M) complex128."""
        Abar = self._dense_system(torch.complex128)[0]  # (H N N)
        I = torch.eye(Abar.shape[-1], dtype=Abar.dtype, device=Abar.device)
        G = I - torch.linalg.matrix_power(Abar, L)  # (H N N)
        C = C.to(torch.complex128)
        Cf = torch.cat([C, C.conj()], -1)  # (dC H N)
        return torch.einsum("chm,hmn->chn", Cf, G)[..., :C.shape[-1]]  # (dC H M)

    # ---- parameters in the full (N-mode) eigenbasis ----------------------------------------
    def eigenvalues(self) -> torch.Tensor:
        """Lambda, the diagonal part: (S, M) complex."""
        return torch.complex(-transform(self.A_real, self.real_transform), self.A_imag)  # (S M)

    def _full(self):
        """Lambda (H, N), P (r, H, N), B (H, N), C~ (dC, H, N), with the conjugate halves appended."""
        reps = self.d_model // self.n_ssm
        lam = self.eigenvalues()  # (S M)
        P = torch.view_as_complex(self.P.contiguous())  # (r S M)
        B = torch.view_as_complex(self.B.contiguous())  # (S M)
        C = torch.view_as_complex(self.C.contiguous())  # (dC H M)
        both = lambda x: torch.cat([x, x.conj()], -1)  # noqa: E731
        return (both(lam).repeat(reps, 1), both(P).repeat(1, reps, 1),  # (H N), (r H N)
                both(B).repeat(reps, 1), both(C))  # (H N), (dC H N)

    def kernel(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """Real kernel (C, H, L), or (2, C, H, L) = (forward, backward) if bidirectional."""
        lam, P, B, C = self._full()  # (H N), (r H N), (H N), (dC H N)
        dt = self.dt(rate)  # (H)
        cdt = lam.dtype
        k = torch.arange(L // 2 + 1, dtype=torch.float64, device=lam.device)
        w = torch.exp(-2j * math.pi * k / L).to(cdt)  # (K) roots of unity
        b = 1 + w  # (K)
        left = torch.cat([C, P.conj()], 0)  # (C+r H N)
        right = torch.cat([B[None], P], 0)  # (1+r H N)
        num = left[:, None] * right[None]  # (C+r 1+r H N)
        X, Y, H, N = num.shape
        num = num.reshape(X * Y, H, N).transpose(0, 1)  # (H XY N)
        chunk = max(1, _CHUNK_ELEMS.get(lam.device.type, 1 << 20) // (H * N))
        parts = []
        for s in range(0, w.shape[0], chunk):
            args = (num, dt, w[s:s + chunk], lam)
            if torch.is_grad_enabled() and w.shape[0] > chunk:
                parts.append(checkpoint(_cauchy, *args, use_reentrant=False))
            else:
                parts.append(_cauchy(*args))
        kk = torch.cat(parts, -1).reshape(H, X, Y, -1).permute(1, 2, 0, 3)  # (C+r 1+r H K)
        Cn, r = C.shape[0], self.rank
        k_CB, k_CP = kk[:Cn, 0], kk[:Cn, 1:]  # (C H K), (C r H K)
        k_PB, k_PP = kk[Cn:, 0], kk[Cn:, 1:]  # (r H K), (r r H K)
        eye = torch.eye(r, dtype=cdt, device=lam.device)[:, :, None, None]
        M = eye + b * k_PP  # (r r H K)
        if r == 1:
            corr = k_CP[:, 0] * k_PB[0] / M[0, 0]  # (C H K)
        else:
            sol = torch.linalg.solve(M.permute(2, 3, 0, 1), k_PB.permute(1, 2, 0)[..., None])[..., 0]  # (H K r)
            corr = torch.einsum("cjhk,hkj->chk", k_CP, sol)  # (C H K)
        khat = 2 * (k_CB - b * corr)  # (dC H K)
        k = torch.fft.irfft(khat, n=L)  # (dC H L)
        return k.reshape(2, self.channels, *k.shape[1:]) if self.bidirectional else k

    # ---- dense views: reference kernel and recurrence ----------------------------------------
    def dense(self, L: int | None = None, rate: float = 1.0):
        """Dense bilinear system: (Abar (H, N, N), Bbar (H, N), C (dC, H, N)).

        With L, C = C~ (I - Abar^L)^-1 (the C whose length-L kernel the convolution uses);
        without L, C~ itself.
        """
        Abar, Bbar, C = self._dense_system(None, rate)
        if L is not None:
            I = torch.eye(Abar.shape[-1], dtype=Abar.dtype, device=Abar.device)
            G = I - torch.linalg.matrix_power(Abar, L)  # (H N N)
            C = torch.linalg.solve(G.transpose(-1, -2), C.permute(1, 2, 0)).permute(2, 0, 1)  # (C H N): C~ G^-1
        return Abar, Bbar, C

    def _dense_system(self, cdtype: torch.dtype | None, rate: float = 1.0):
        """(Abar (H, N, N), Bbar (H, N), C~ (dC, H, N)) of the bilinear system, in ``cdtype``
        (None: the parameters' complex dtype)."""
        lam, P, B, C = self._full()
        if cdtype is not None:
            lam, P, B, C = (x.to(cdtype) for x in (lam, P, B, C))
        # A = diag(lam) - sum_r P_r P_r^*; with E = I - dt/2 A = diag(e) + dt/2 sum_r P_r P_r^*,
        # Abar = E^-1 (I + dt/2 A) = 2 E^-1 - I and Bbar = E^-1 dt B; E^-1 by Woodbury (O(N^2 r)).
        dt = self.dt(rate).to(lam.dtype)[:, None]  # (H 1)
        d = 1.0 / (1 - dt / 2 * lam)  # (H N): diag(e)^-1
        r = P.shape[0]
        Pd = P * d  # (r H N)
        M = (2.0 / dt)[..., None] * torch.eye(r, dtype=lam.dtype, device=lam.device) \
            + torch.einsum("rhn,shn->hrs", P.conj(), Pd)  # (H r r)
        X = torch.linalg.solve(M, (P.conj() * d).transpose(0, 1))  # (H r N)
        E_inv = torch.diag_embed(d) - torch.einsum("rhi,hrj->hij", Pd, X)  # (H N N)
        I = torch.eye(lam.shape[-1], dtype=lam.dtype, device=lam.device)
        Abar = 2 * E_inv - I  # (H N N)
        Bbar = torch.einsum("hij,hj->hi", E_inv, dt * B)  # (H N)
        return Abar, Bbar, C

    def kernel_reference(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """Slow dense kernel K_l = Re(C Abar^l Bbar), l < L, unidirectional: (C, H, L)."""
        if self.bidirectional:
            raise UserError("kernel_reference is for unidirectional cores")
        Abar, Bbar, C = self.dense(L, rate)
        x, out = Bbar, []
        for _ in range(L):
            out.append(torch.einsum("chn,hn->ch", C, x).real)  # (C H)
            x = torch.einsum("hij,hj->hi", Abar, x)  # (H N)
        return torch.stack(out, -1)  # (C H L)

    def init_state(self, batch: int) -> torch.Tensor:
        """Zero state (batch, H, N) complex (the full N modes)."""
        if self.bidirectional:
            raise UserError("a bidirectional core has no recurrent view")
        dtype = torch.complex128 if self.log_dt.dtype == torch.float64 else torch.complex64
        return torch.zeros(batch, self.d_model, self.d_state, dtype=dtype, device=self.log_dt.device)

    def step(self, u_t: torch.Tensor, state: torch.Tensor, rate: float = 1.0, L: int | None = None):
        """x = Abar x + Bbar u_t; y = Re(C x) + D u_t. u_t (B, H) -> (B, C*H).

        ``L`` (required) is the length whose convolution kernel the recurrence reproduces, because
        C is stored as C~ = C (I - Abar^L). Recomputes the dense system each call (slow; for tests
        and short generation).
        """
        if self.bidirectional:
            raise UserError("a bidirectional core has no recurrent view")
        if L is None:
            raise UserError("the S4 core stores C~ = C (I - Abar^L): pass L to step")
        Abar, Bbar, C = self.dense(L, rate)
        state = torch.einsum("hij,bhj->bhi", Abar, state) + Bbar * u_t[..., None].to(state.dtype)  # (B H N)
        y = torch.einsum("chn,bhn->bch", C, state).real + self.D[None] * u_t[:, None]  # (B C H)
        return y.reshape(u_t.shape[0], -1).to(u_t.dtype), state


def _cauchy(num: torch.Tensor, dt: torch.Tensor, w: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """sum_n num[h, x, n] / (a[h, k] - b[k] lam[h, n]) with a = (2/dt)(1 - w), b = 1 + w.

    num: (H, X, N) complex, dt: (H,), w: (K,) roots of unity, lam: (H, N) -> (H, X, K) complex.
    (a is formed here, not sliced from an (H, L/2) table, so each chunk's backward stays chunk-sized.)
    """
    a = (2.0 / dt)[:, None] * (1 - w)  # (H K)
    R = 1.0 / (a[:, :, None] - (1 + w)[None, :, None] * lam[:, None, :])  # (H K N)
    return torch.matmul(num, R.transpose(1, 2))  # (H X K)
