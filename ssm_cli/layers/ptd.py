"""S4-PTD initialisation: perturb HiPPO-LegS, then diagonalise (docs/ptd-s5.md).

HiPPO-LegS A_H is non-normal with a catastrophically ill-conditioned eigenvector matrix
(kappa(V) ~ 1e20 at N = 64), so its exact diagonalisation is ill-posed. PTD picks a small complex
perturbation E minimising
    cond(V)^2 + penalty * ||E||_F,   A_H + E = V Lambda V^-1,
by Adam, and initialises the diagonal SSM with Lambda, B~ = V^-1 B and C~ = C V. The spectrum is
not conjugate-symmetric: all N modes are kept.

The solver follows the authors' released LRA solver (docs/ptd-s5.md, "The PTD solver"): E_0 =
0.1 (U + iU), U ~ U[0, 1) entrywise (a positive-mean start, not a centred one); Adam, its
learning rate multiplied by ``lr_decay`` every 100 steps; the last iterate is kept. Ours: the
penalty and the learning rate are relative to ||A_H||_2 (which grows like N^2), so one setting
gives the authors' kappa / ||E|| trade-off at every N (``solve``). Eigenvalues whose real part
is >= 0 are reflected, Re -> -|Re| (the authors' fix), and counted in ``n_flipped``. The objective
is dominated by cond(V)^2, so ||E|| grows for as long as the solver runs: ``steps`` and ``penalty``
choose the trade-off (docs/ptd-s5.md has the measured kappa / ||E|| per N).

Solutions are deterministic per (N, options), cached in memory and on disk (``$SSM_PTD_CACHE`` or
~/.cache/ssm_cli/ptd), one file per (N, options).
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..values import Range
from .hippo import hippo

log = logging.getLogger(__name__)

# The solver's options, ``option: (valid, default)``; the s4d/s5 cores declare them as
# ``ptd_<option>`` (cores/s4d.py, cores/s5.py).
PTD_OPTIONS = {
    "penalty": (Range(0), 800.0),              # weight of ||E||_F / ||A_H||_2 against cond(V)^2
    "steps": (Range(1, integer=True), 3000),   # Adam steps
    "lr": (Range(0, lo_open=True), 6e-5),      # Adam's learning rate on E / ||A_H||_2
    "lr_decay": (Range(0, 1, lo_open=True), 0.98),  # lr factor every 100 steps
    "seed": (Range(0, integer=True), 0),       # seed of E_0
}
PTD_DEFAULTS = {k: d for k, (_, d) in PTD_OPTIONS.items()}
CACHE_VERSION = 3  # bump when the solver's algorithm changes


def _cache_file(N: int, opts: dict) -> Path:
    root = Path(os.environ.get("SSM_PTD_CACHE", Path.home() / ".cache" / "ssm_cli" / "ptd"))
    tag = "_".join(f"{k}{opts[k]!r}" for k in sorted(opts))
    return root / f"legs_N{N}_{tag}_v{CACHE_VERSION}.npz"


def solve(N: int, penalty: float, steps: int, lr: float, lr_decay: float, seed: int) -> np.ndarray:
    """The perturbation E (N, N) complex128 of A_H (HiPPO-LegS, negative definite convention).

    The authors optimise on the positive matrix -A_H; E for -A_H is -E for A_H (same V).
    ``penalty`` and ``lr`` are relative to s = ||A_H||_2 (the objective is cond(V)^2 +
    penalty ||E||_F / s, Adam's steps on E / s): Adam is invariant to the gradient's scale, so this
    is the authors' solver at lambda = penalty / s and learning rate lr * s, one setting for every N."""
    A_np = -hippo("legs", N)[0]
    scale = float(np.linalg.norm(A_np, 2))
    penalty, lr = penalty / scale, lr * scale
    A_pos = torch.tensor(A_np, dtype=torch.complex128)  # (N N)
    g = torch.Generator().manual_seed(seed)
    E0 = torch.complex(torch.rand(N, N, generator=g, dtype=torch.float64),
                       torch.rand(N, N, generator=g, dtype=torch.float64)) * 0.1  # (N N)
    E = E0.clone().requires_grad_(True)
    opt = torch.optim.Adam([E], lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=100, gamma=lr_decay)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small LAPACK calls: threads only add contention
    try:
        with torch.enable_grad():
            for _ in range(steps):
                opt.zero_grad()
                _, V = torch.linalg.eig(A_pos + E)  # (N N)
                loss = torch.linalg.cond(V) ** 2 + penalty * torch.linalg.norm(E)
                loss.backward()
                if not torch.isfinite(E.grad).all():  # (near-)degenerate eigenvalues: keep the last good E
                    break
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    return -E.detach().numpy()  # the perturbation of A_H itself


def diagnostics(E: np.ndarray) -> dict:
    """Lambda (N,) with Re forced negative, V (N, N), B~ = V^-1 B (N,), and the checks:
    cond_V, E_ratio = ||E||_2 / ||A_H||_2, n_flipped (eigenvalues with Re >= 0 reflected)."""
    N = E.shape[0]
    A, B = hippo("legs", N)
    lam, V = np.linalg.eig(A + E)
    n_flipped = int(np.sum(lam.real >= 0))
    lam_fixed = -np.abs(lam.real) + 1j * lam.imag
    Bt = np.linalg.solve(V, B.astype(np.complex128))
    return {"Lambda": lam_fixed, "Lambda_raw": lam, "V": V, "B": Bt, "E": E,
            "cond_V": float(np.linalg.cond(V)),
            "E_ratio": float(np.linalg.norm(E, 2) / np.linalg.norm(A, 2)), "n_flipped": n_flipped}


def ptd_init(N: int, **options) -> dict:
    """The PTD solution of size N for the solver ``options`` (PTD_OPTIONS; defaults filled in).

    Returns ``diagnostics(E)``: Lambda (N,) (real parts forced negative), Lambda_raw (before),
    V (N, N), B~ (N,), E (N, N) complex128, cond_V, E_ratio, n_flipped."""
    opts = {**PTD_DEFAULTS, **options}
    unknown = set(opts) - set(PTD_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown PTD options {sorted(unknown)}; valid: {', '.join(PTD_DEFAULTS)}")
    return _ptd_init(N, tuple(sorted(opts.items())))


@lru_cache(maxsize=16)
def _ptd_init(N: int, opts: tuple) -> dict:
    o = dict(opts)
    f = _cache_file(N, o)
    if f.exists():
        E = np.load(f)["E"]
    else:
        E = solve(N, **o)
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, E=E)
            os.replace(tmp, f)
        except OSError:
            pass  # a read-only home only costs the recomputation
    sol = diagnostics(E)
    log.info("PTD N=%d %s: cond(V)=%.2f ||E||/||A||=%.4f, %d eigenvalue(s) with Re >= 0 reflected",
             N, o, sol["cond_V"], sol["E_ratio"], sol["n_flipped"])
    return sol


def ptd_core_options(options: dict) -> dict:
    """The solver's options from a core's ``ptd_<option>`` keys."""
    return {k[len("ptd_"):]: v for k, v in options.items() if k.startswith("ptd_")}


def main(argv: list[str] | None = None) -> None:
    """``python -m ssm_cli.layers.ptd N [N ...] [--steps S] [--penalty P] [--lr LR]``: the checks per N."""
    import argparse
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("N", type=int, nargs="+")
    for k, d in PTD_DEFAULTS.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(d), default=d)
    a = ap.parse_args(argv)
    print("| N | cond(V) | ||E||_2/||A_H||_2 | Re >= 0 reflected |")
    print("|---|---|---|---|")
    for N in a.N:
        s = ptd_init(N, **{k: getattr(a, k) for k in PTD_DEFAULTS})
        print(f"| {N} | {s['cond_V']:.2f} | {s['E_ratio']:.4f} | {s['n_flipped']} |", flush=True)


if __name__ == "__main__":
    main()
