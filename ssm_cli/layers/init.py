"""Initialisations of the diagonal state matrix A (and B), by name — pure functions, float64.

The S4D paper's inits (FACTS §1), with N the real state size and M = N/2 complex modes,
mode index n = 0 … M-1:

| init | A_n |
|---|---|
| ``inv``  | -1/2 + i (N/pi) (N/(2n+1) - 1)                     (S4D-Inv)   |
| ``lin``  | -1/2 + i pi n                                         (S4D-Lin)   |
| ``legs`` | eigenvalues of the normal part of HiPPO-LegS, B = V^* B_hippo, Im B clipped to [-2, 2] (S4D-LegS) |
| ``real`` | -(n+1), imaginary part 0                              (S4D-Real)  |
| ``rand`` | -1/2 + i exp(z), z ~ N(0, 1)                           (random imaginary part) |
| ``ptd``  | eigenvalues of HiPPO-LegS + E (S4-PTD, see ptd.py): N modes, not N/2; B = V^-1 B_hippo |

Further ablation knobs (applied in this order):
``real_random``: real part -U[0, 1] instead of -1/2 (not for ``real``, whose real part is -(n+1):
an error);
``imag_random``: the index n in the ``inv``/``lin`` formulas is replaced by M·U[0, 1] (other inits:
an error);
``real_scale`` / ``imag_scale``: multiply the real / imaginary part.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UserError
from .hippo import nplr
from .ptd import ptd_init

DIAG_INITS = ("inv", "lin", "legs", "real", "rand", "ptd")
LEGS_B_CLIP = 2.0  # |Im B| bound of the LegS init, as the reference's (state-spaces/s4 nplr B_clip)


def diagonal_init(
    init: str,
    N: int,
    n_copies: int = 1,
    *,
    real_random: bool = False,
    imag_random: bool = False,
    real_scale: float = 1.0,
    imag_scale: float = 1.0,
    rng: np.random.Generator | None = None,
    ptd_options: dict | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """A (n_copies, N/2) complex128 and, for ``legs``, B (n_copies, N/2) complex128 (else None).

    ``ptd`` returns N modes: A, B (n_copies, N), real parts forced negative (-|Re|); the
    random/scale knobs do not apply to it; ``ptd_options`` go to ``ptd.ptd_init``.
    """
    rng = rng if rng is not None else np.random.default_rng()
    if init == "ptd":
        if real_random or imag_random or real_scale != 1.0 or imag_scale != 1.0:
            raise UserError("init 'ptd' takes none of real_random, imag_random, real_scale, imag_scale")
        sol = ptd_init(N, **(ptd_options or {}))
        lam = sol["Lambda"]  # real parts already -|Re|
        return np.broadcast_to(lam, (n_copies, N)).copy(), np.broadcast_to(sol["B"], (n_copies, N)).copy()
    if imag_random and init not in ("inv", "lin"):
        raise UserError(f"imag_random applies to init inv or lin only (got init {init!r}); "
                        "init 'rand' is the random-imaginary init")
    if real_random and init == "real":
        raise UserError("real_random does not apply to init 'real' (its real part is -(n+1))")
    M = N // 2
    shape = (n_copies, M)
    real = rng.uniform(0.0, 1.0, shape) if real_random else np.full(shape, 0.5)  # (n M)
    idx = M * rng.uniform(0.0, 1.0, shape) if imag_random else np.broadcast_to(np.arange(M, dtype=float), shape)
    B = None
    if init == "lin":
        imag = math.pi * idx
    elif init == "inv":
        imag = (N / math.pi) * (N / (2 * idx + 1) - 1)
    elif init == "real":
        real = np.broadcast_to(np.arange(M, dtype=float) + 1, shape).copy()
        imag = np.zeros(shape)
    elif init == "rand":
        imag = np.exp(rng.standard_normal(shape))
    elif init == "legs":
        lam, _, Bt, _ = nplr("legs", N)
        if not real_random:
            real = np.broadcast_to(-lam.real, shape).copy()
        imag = np.broadcast_to(lam.imag, shape).copy()
        # the reference clips B's imaginary part to [-2, 2] (the high-frequency modes' |Im B| grows
        # like sqrt(n) without it)
        Bt = Bt.real + 1j * np.clip(Bt.imag, -LEGS_B_CLIP, LEGS_B_CLIP)
        B = np.broadcast_to(Bt, shape).copy()
    else:
        raise ValueError(f"unknown init {init!r}; valid: {', '.join(DIAG_INITS)}")
    A = -real_scale * real + 1j * imag_scale * imag  # (n M)
    return A.astype(np.complex128), B
