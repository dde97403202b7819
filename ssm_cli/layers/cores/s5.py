"""S5 (Smith, Warrington, Linderman 2023; docs/ptd-s5.md): one MIMO diagonal SSM of state P per layer.

    x_t = Lambda_bar x_{t-1} + B_bar u_t,   y_t = Re(C~ x_t) (x 2 with conjugate symmetry) + D u_t

Parameters (P' = P/2 with conjugate symmetry, else P):
  Lambda_re, Lambda_im (P',)   continuous eigenvalues                       tagged lr, wd 0
  log_step (P',)               Delta = exp(log_step) * rate, per state     tagged lr, wd 0
  B (P', H, 2)                 B~ = V^-1 B, B lecun-normal (P, H)          tag: opt_config
  C (dC, H, P', 2)             C~ = C V (or complex normal), dC = 2 if bidirectional  tag: opt_config
  D (1, H)                     skip, standard normal                        tag: opt_config
Initialisation ``legs``: J = ``blocks`` copies of the diagonalised normal part of HiPPO-LegS of size
P/J (Re Lambda = -1/2, unitary V) on a block-diagonal V; ``ptd``: the PTD solution of size P/J
(ptd.py), non-unitary V, no conjugate symmetry. The states are computed by the parallel scan
(scan.py); ``step``/``init_state`` give the recurrent view, ``forward_sequential`` the reference.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ...errors import UserError
from ...values import Range
from ..base import SSMCore, register
from ..hippo import normal_part
from ..options import PTD
from ..ptd import ptd_core_options, ptd_init
from ..registry import register_core
from ..scan import scan, scan_sequential

C_INITS = ("trunc_standard_normal", "lecun_normal", "complex_normal")
OPT_CONFIGS = ("standard", "BandCdecay", "BfastandCdecay", "noBCdecay")

OPTIONS = {
    "init": (("legs", "ptd"), "legs"),           # legs: HiPPO-N blocks; ptd: PTD blocks (S5-PTD)
    "blocks": (Range(1, integer=True), 1),       # J blocks of size P/J
    "conj_sym": ((True, False, None), None),     # None: True for legs, False for ptd
    "C_init": (C_INITS, "trunc_standard_normal"),
    "disc": (("zoh", "bilinear"), "zoh"),
    "dt_min": (Range(0, lo_open=True), 0.001),   # log Delta ~ U[log dt_min, log dt_max], per state
    "dt_max": (Range(0, lo_open=True), 0.1),
    "clip_eigs": ((False, True), False),         # Re Lambda clipped to <= -1e-4 in the forward
    "bidirectional": ((False, True), False),     # a second, backward scan with its own C
    "channels": ((1,), 1),                       # S5's output is H features (MIMO)
    "lr": (Range(0), 0.001),                     # ssm_lr: Lambda, log_step (and B per opt_config), wd 0
    "lr_factor": (Range(0, lo_open=True, none=True), None),  # None: the "regular" group is the global
                                                 # optimizer group; x: lr_factor * lr, global wd
    "opt_config": (OPT_CONFIGS, "standard"),     # which group B, C, D go to (S5's opt_config)
    "seed": ((int, type(None)), None),
    **PTD,
}


def _trunc_normal(gen: torch.Generator, shape, std: float) -> torch.Tensor:
    """Normal truncated to +-2 standard deviations, rescaled to variance std^2 (JAX's lecun_normal)."""
    x = torch.empty(shape, dtype=torch.float64)
    torch.nn.init.trunc_normal_(x, 0.0, 1.0, -2.0, 2.0, generator=gen)
    return x * (std / 0.87962566103423978)  # the std of N(0,1) truncated to [-2, 2]


def s5_init(init: str, P: int, blocks: int, conj_sym: bool, ptd_options: dict):
    """(Lambda (P',), V (P, P'), V^-1 (P', P)) complex128 of the block-diagonal initialisation."""
    if P % blocks:
        raise UserError(f"blocks={blocks} must divide the state size d_state={P}")
    Pb = P // blocks
    if init == "legs":
        S = normal_part("legs", Pb)  # (Pb Pb): -1/2 I + skew
        re = float(np.mean(np.diag(S)))
        mu, V = np.linalg.eigh(-1j * (S - re * np.eye(Pb)))  # ascending; pairs (mu, -mu) conjugate
        lam = re + 1j * mu  # (Pb)
        if conj_sym:
            if Pb % 2:
                raise UserError(f"conj_sym needs an even block size d_state/blocks; got {Pb}")
            lam, V = lam[: Pb // 2], V[:, : Pb // 2]  # one of each conjugate pair
        Vinv = V.conj().T  # unitary
    else:
        if conj_sym:
            raise UserError("init 'ptd' has no conjugate symmetry: set conj_sym=false (or null)")
        sol = ptd_init(Pb, **ptd_options)
        lam, V = sol["Lambda"], sol["V"]
        Vinv = np.linalg.inv(V)
    from scipy.linalg import block_diag
    return np.tile(lam, blocks), block_diag(*[V] * blocks), block_diag(*[Vinv] * blocks)


@register_core("s5", options=OPTIONS, doc="S5: one MIMO diagonal SSM per layer, parallel scan (Smith et al. 2023)")
class S5(SSMCore):
    """S5 core: u (B, L, H) float -> y (B, L, H) = the MIMO SSM with D; no activation.

    Args (keywords; ``OPTIONS`` holds the table): d_model H, d_state P (the full state size),
    init, blocks, conj_sym, C_init, disc, dt_min, dt_max, clip_eigs, bidirectional, lr, lr_factor,
    opt_config, seed, ptd_* (the PTD solver's options for init=ptd).
    """

    def __init__(self, d_model: int, d_state: int = 64, *, init: str = "legs", blocks: int = 1,
                 conj_sym: bool | None = None, C_init: str = "trunc_standard_normal", disc: str = "zoh",
                 dt_min: float = 0.001, dt_max: float = 0.1, clip_eigs: bool = False,
                 bidirectional: bool = False, channels: int = 1, lr: float = 0.001,
                 lr_factor: float | None = None, opt_config: str = "standard", seed: int | None = None,
                 **ptd_options):
        super().__init__()
        self.options = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        H, P = d_model, d_state
        if not 0 < dt_min <= dt_max:
            raise UserError(f"need 0 < dt_min <= dt_max; got dt_min={dt_min}, dt_max={dt_max}")
        conj_sym = (init == "legs") if conj_sym is None else conj_sym
        self.d_model, self.d_state, self.channels = H, P, 1
        self.conj_sym, self.disc, self.clip_eigs, self.bidirectional = conj_sym, disc, clip_eigs, bidirectional
        lam, V, Vinv = s5_init(init, P, blocks, conj_sym, ptd_core_options(ptd_options))
        Pl = lam.shape[0]
        gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()) if seed is None else seed)
        B = _trunc_normal(gen, (P, H), 1 / math.sqrt(P)).to(torch.complex128)  # (P H) lecun normal, fan_in P
        Bt = torch.tensor(Vinv) @ B  # (P' H)
        n_dir = 2 if bidirectional else 1
        if C_init == "complex_normal":
            Ct = torch.complex(torch.randn(n_dir, H, Pl, generator=gen, dtype=torch.float64),
                               torch.randn(n_dir, H, Pl, generator=gen, dtype=torch.float64)) * math.sqrt(0.5)
        else:
            # trunc_standard_normal: each row lecun-normal on (1, P, 2) (fan_in P); lecun_normal:
            # on (H, P, 2) (JAX's fan_in is then P * H)
            std = 1 / math.sqrt(P if C_init == "trunc_standard_normal" else P * H)
            C = _trunc_normal(gen, (n_dir, H, P, 2), std)
            Ct = torch.view_as_complex(C.contiguous()) @ torch.tensor(V)  # (dC H P')
        log_step = torch.rand(Pl, generator=gen, dtype=torch.float64) * (math.log(dt_max) - math.log(dt_min)) \
            + math.log(dt_min)  # (P')
        # optimizer groups (S5's opt_config): "ssm" = (lr, wd 0); "regular" = lr_factor * lr with the
        # global weight decay, or the global group when lr_factor is None
        ssm = {"lr": lr, "weight_decay": 0.0}
        regular = {"lr": None} if lr_factor is None else {"lr": lr_factor * lr, "weight_decay": None}
        frozen = {"lr": 0.0, "weight_decay": 0.0}
        group_B = {"standard": ssm, "BandCdecay": frozen, "BfastandCdecay": regular, "noBCdecay": ssm}[opt_config]
        group_CD = ssm if opt_config == "noBCdecay" else regular
        register(self, "Lambda_re", torch.tensor(lam.real, dtype=torch.float32), **ssm)  # (P')
        register(self, "Lambda_im", torch.tensor(lam.imag, dtype=torch.float32), **ssm)  # (P')
        register(self, "log_step", log_step.float(), **ssm)  # (P')
        register(self, "B", torch.view_as_real(Bt.to(torch.complex64)).contiguous(), **group_B)  # (P' H 2)
        register(self, "C", torch.view_as_real(Ct.to(torch.complex64)).contiguous(), **group_CD)  # (dC H P' 2)
        register(self, "D", torch.randn(1, H, generator=gen), **group_CD)  # (1 H)

    # ---- discrete parameters ------------------------------------------------------------------
    def eigenvalues(self) -> torch.Tensor:
        """Continuous Lambda (P',) complex, clipped to Re <= -1e-4 with clip_eigs."""
        re = self.Lambda_re.clamp(max=-1e-4) if self.clip_eigs else self.Lambda_re
        return torch.complex(re, self.Lambda_im)  # (P')

    def step_sizes(self, rate: float = 1.0) -> torch.Tensor:
        """Delta (P',) per state."""
        return torch.exp(self.log_step) * rate  # (P')

    def discrete(self, rate: float = 1.0):
        """(Lambda_bar (P',), B_bar (P', H)) complex, by ZOH or bilinear."""
        lam, dt = self.eigenvalues(), self.step_sizes(rate)  # (P'), (P')
        Bt = torch.view_as_complex(self.B)  # (P' H)
        if self.disc == "zoh":
            lam_bar = torch.exp(lam * dt)  # (P')
            return lam_bar, ((lam_bar - 1) / lam)[:, None] * Bt  # (P'), (P' H)
        bl = 1 / (1 - dt / 2 * lam)  # (P')
        return bl * (1 + dt / 2 * lam), (bl * dt)[:, None] * Bt  # (P'), (P' H)

    def noise_dt(self) -> torch.Tensor:
        """The input noise's time step (H,): S5's Delta is per state, so every channel gets the
        layer's geometric-mean Delta (docs/ptd-s5.md, "Fourier-mode noise")."""
        return torch.exp(self.log_step.mean()).expand(self.d_model)  # (H)

    # ---- the three computations ---------------------------------------------------------------
    def _states(self, u: torch.Tensor, rate: float, scan_fn) -> tuple[torch.Tensor, ...]:
        lam_bar, B_bar = self.discrete(rate)  # (P'), (P' H)
        cdt = torch.complex128 if u.dtype == torch.float64 else torch.complex64
        Bu = torch.einsum("ph,blh->blp", B_bar.to(cdt), u.to(cdt))  # (B L P')
        xs = (scan_fn(lam_bar.to(cdt), Bu),)  # (B L P')
        if self.bidirectional:
            xs = xs + (scan_fn(lam_bar.to(cdt), Bu, reverse=True),)
        return xs

    def _readout(self, xs, u: torch.Tensor) -> torch.Tensor:
        C = torch.view_as_complex(self.C).to(xs[0].dtype)  # (dC H P')
        y = sum(torch.einsum("hp,blp->blh", C[d], x) for d, x in enumerate(xs)).real  # (B L H)
        if self.conj_sym:
            y = 2 * y
        return (y + self.D.to(u.dtype) * u).to(u.dtype)  # (B L H)

    def forward(self, u: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """u: (B, L, H) float -> y (B, L, H) by the parallel scan."""
        if u.shape[-1] != self.d_model:
            raise UserError(f"input has {u.shape[-1]} features but the core has d_model={self.d_model}")
        with torch.autocast(device_type=u.device.type, enabled=False):
            work = torch.float64 if u.dtype == torch.float64 else torch.float32
            return self._readout(self._states(u.to(work), rate, scan), u.to(work)).to(u.dtype)  # (B L H)

    def forward_sequential(self, u: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """The reference: the same output by a loop over time (scan.scan_sequential)."""
        return self._readout(self._states(u, rate, scan_sequential), u)  # (B L H)

    def init_state(self, batch: int) -> torch.Tensor:
        """Zero state (batch, P') complex."""
        if self.bidirectional:
            raise UserError("a bidirectional core has no recurrent view")
        dtype = torch.complex128 if self.Lambda_re.dtype == torch.float64 else torch.complex64
        return torch.zeros(batch, self.Lambda_re.shape[0], dtype=dtype, device=self.Lambda_re.device)

    def step(self, u_t: torch.Tensor, state: torch.Tensor, rate: float = 1.0):
        """One step: u_t (B, H) -> (y_t (B, H), state (B, P'))."""
        if self.bidirectional:
            raise UserError("a bidirectional core has no recurrent view")
        lam_bar, B_bar = self.discrete(rate)  # (P'), (P' H)
        state = lam_bar * state + u_t.to(state.dtype) @ B_bar.T.to(state.dtype)  # (B P')
        y = self._readout((state[:, None],), u_t[:, None])[:, 0]  # (B H)
        return y, state

    def kernel(self, L: int, rate: float = 1.0) -> torch.Tensor:
        raise UserError("the S5 core is a MIMO scan, not a per-channel convolution: it has no kernel")

