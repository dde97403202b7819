"""|G(i omega)| of the S4D-LegS, S4D-Inv, PTD and exact HiPPO-LegS initialisations (docs/ptd-s5.md).

G(s) = C (sI - A)^-1 B of one SISO system, for N states:
  exact  A = A_H (HiPPO-LegS), B = B_H, C = 1 (all ones, in HiPPO's basis)
  legs   the normal part S = V Lambda V^* (what S4D-LegS diagonalises): B~ = V^* B_H, C~ = C V
  ptd    A_H + E = V Lambda V^-1 (ptd.py): B~ = V^-1 B_H, C~ = C V
  inv    S4D-Inv's Lambda with B~ = C~ = 1 on its N/2 modes (no HiPPO basis behind it)
Conjugate-symmetric inits (legs, inv) keep N/2 modes and add each mode's conjugate.
A trained run's checkpoint gives the first layer's first channel of its s4d core instead.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ssm_cli.errors import UserError
from ssm_cli.layers.hippo import hippo, nplr
from ssm_cli.layers.init import diagonal_init
from ssm_cli.layers.ptd import ptd_init

OMEGA_MARK = 325.4
INITS = ("legs", "inv", "ptd", "exact")


def diagonal_transfer(lam: np.ndarray, b: np.ndarray, c: np.ndarray, omegas: np.ndarray, conj: bool) -> np.ndarray:
    """G(i omega) = sum_n c_n b_n / (i omega - lam_n) (+ the conjugate modes with ``conj``): (W,) complex."""
    s = 1j * omegas[:, None]  # (W 1)
    g = ((c * b)[None] / (s - lam[None])).sum(-1)  # (W)
    if conj:
        g = g + ((c * b).conj()[None] / (s - lam.conj()[None])).sum(-1)
    return g


def init_transfer(init: str, N: int, omegas: np.ndarray, ptd_options: dict | None = None) -> np.ndarray:
    """|G(i omega)| (W,) of one initialisation of size N (the table in the module docstring)."""
    A, B = hippo("legs", N)
    C = np.ones(N)
    if init == "exact":
        return np.abs(np.array([C @ np.linalg.solve(1j * w * np.eye(N) - A, B) for w in omegas]))
    if init == "legs":
        lam, _, Bt, V = nplr("legs", N)  # N/2 modes, V (N, N/2)
        return np.abs(diagonal_transfer(lam, Bt, C @ V, omegas, conj=True))
    if init == "ptd":
        sol = ptd_init(N, **(ptd_options or {}))
        return np.abs(diagonal_transfer(sol["Lambda"], sol["B"], C @ sol["V"], omegas, conj=False))
    if init == "inv":
        lam, _ = diagonal_init("inv", N)
        return np.abs(diagonal_transfer(lam[0], np.ones(N // 2), np.ones(N // 2), omegas, conj=True))
    raise UserError(f"unknown init {init!r} for the transfer plot; valid: {', '.join(INITS)}")


def checkpoint_transfer(path: Path, omegas: np.ndarray) -> tuple[str, np.ndarray]:
    """(label, |G(i omega)|) of layer 0, channel 0 of a trained s4d run's checkpoint (``last.ckpt``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    except (OSError, KeyError, RuntimeError) as e:
        raise UserError(f"cannot read the checkpoint {str(path)!r}: {e}") from None
    pre = next((k[: -len("A_real")] for k in state if k.endswith("blocks.0.core.A_real")), None)
    if pre is None:
        raise UserError(f"{str(path)!r} has no s4d core (blocks.0.core.A_real); the transfer plot reads s4d runs")
    re, im = state[pre + "A_real"][0].double(), state[pre + "A_imag"][0].double()
    # A = -exp(A_real) + i A_imag: the default transforms (real_transform exp, imag_transform none)
    lam = (-torch.exp(re) + 1j * im).numpy()  # (M)
    b = torch.view_as_complex(state[pre + "B"][0].double().contiguous()).numpy()  # (M)
    c = torch.view_as_complex(state[pre + "C"][0, 0].double().contiguous()).numpy()  # (M)
    return f"checkpoint ({lam.shape[0]} modes)", np.abs(diagonal_transfer(lam, b, c, omegas, conj=not _is_ptd(path)))


def _is_ptd(ckpt: Path) -> bool:
    cfg = Path(ckpt).parent / "config.yaml"
    return cfg.exists() and "init: ptd" in cfg.read_text()


def plot_transfer(N: int, out: Path, checkpoint: Path | None = None, inits=INITS,
                  omega_min: float = 1e-1, omega_max: float = 1e5, points: int = 2000,
                  ptd_options: dict | None = None) -> dict:
    """Draw |G(i omega)| (log-log) for ``inits`` (and a checkpoint's) to the PNG ``out``; returns the curves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if N < 2 or N % 2:
        raise UserError(f"N must be an even integer >= 2; got {N}")
    omegas = np.logspace(np.log10(omega_min), np.log10(omega_max), points)
    curves = {name: init_transfer(name, N, omegas, ptd_options) for name in inits}
    if checkpoint is not None:
        label, g = checkpoint_transfer(Path(checkpoint), omegas)
        curves[label] = g
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = {"legs": "S4D-LegS", "inv": "S4D-Inv", "ptd": "PTD", "exact": "HiPPO-LegS (exact)"}
    for name, g in curves.items():
        ax.loglog(omegas, g, label=names.get(name, name), lw=1.2)
    ax.axvline(OMEGA_MARK, color="k", ls="--", lw=0.8, label=f"ω = {OMEGA_MARK}")
    ax.set_xlabel("ω")
    ax.set_ylabel("|G(iω)|")
    ax.set_title(f"transfer functions of the initialisations, N = {N}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return {"omegas": omegas, **curves}
