"""HiPPO matrices (LegS, LegT, FouT) and their normal-plus-low-rank (NPLR) decomposition.

Conventions (docs/papers.md §1, §4): x'(t) = A x(t) + B u(t) with
  LegS: A[i,j] = -sqrt(2i+1) sqrt(2j+1) (i > j), A[i,i] = -(i+1), 0 above; B[i] = sqrt(2i+1).
  LegT: A[i,j] = -sqrt(2i+1) sqrt(2j+1) * ((-1)^(i-j) if i < j else 1); B[i] = sqrt(2i+1).
  FouT: frequencies 1..N/2-1 in 2x2 rotation blocks, A = pi * (rotations) - B B^T;
        B[0] = 1, B[2k] = sqrt(2) (k >= 1), odd entries 0.
Each A is S - P^T P with S normal (for all three: a multiple of the identity plus a skew-symmetric
matrix; LegT and FouT are purely skew) and P of rank 1 (LegS, FouT) or 2 (LegT, the
entries sqrt(2n+1) split by parity). Everything here is float64 numpy, run once
at initialisation.
"""
from __future__ import annotations

import numpy as np

MEASURES = ("legs", "legt", "fout")


def hippo(measure: str, N: int) -> tuple[np.ndarray, np.ndarray]:
    """The HiPPO state matrix A (N, N) and input vector B (N,), float64."""
    n = np.arange(N)
    r = np.sqrt(2 * n + 1.0)
    if measure == "legs":
        A = -np.tril(np.outer(r, r), -1) - np.diag(n + 1.0)  # (N N)
        B = r.copy()  # (N)
    elif measure == "legt":
        i, j = np.meshgrid(n, n, indexing="ij")
        sign = np.where(i < j, (-1.0) ** (i - j), 1.0)  # (N N)
        A = -r[:, None] * sign * r[None, :]  # (N N)
        B = r.copy()  # (N)
    elif measure == "fout":
        freqs = np.arange(N // 2)
        d = np.stack([np.zeros(N // 2), freqs], -1).reshape(-1)[1:]  # (N-1) super-diagonal
        A = np.pi * (-np.diag(d, 1) + np.diag(d, -1))  # (N N) skew rotations
        B = np.zeros(N)
        B[0::2] = np.sqrt(2.0)
        B[0] = 1.0
        A = A - np.outer(B, B)  # (N N)
    else:
        raise ValueError(f"unknown measure {measure!r}; valid: {', '.join(MEASURES)}")
    return A, B


def low_rank(measure: str, N: int) -> np.ndarray:
    """P (r, N) with A + P^T P normal (r = 1 for LegS/FouT, 2 for LegT)."""
    n = np.arange(N)
    if measure == "legs":
        return np.sqrt(n + 0.5)[None, :]  # (1 N)
    if measure == "legt":
        p = np.sqrt(2 * n + 1.0)
        p0, p1 = p.copy(), p.copy()
        p0[0::2] = 0.0
        p1[1::2] = 0.0
        return np.stack([p0, p1])  # (2 N)
    if measure == "fout":
        p = np.zeros(N)
        p[0::2] = np.sqrt(2.0)
        p[0] = 1.0
        return p[None, :]  # (1 N)
    raise ValueError(f"unknown measure {measure!r}; valid: {', '.join(MEASURES)}")


def normal_part(measure: str, N: int) -> np.ndarray:
    """S = A + P^T P (N, N), a normal matrix."""
    A, _ = hippo(measure, N)
    P = low_rank(measure, N)
    return A + P.T @ P


def nplr(measure: str, N: int):
    """Unitary diagonalisation of the normal part, keeping one mode of each conjugate pair.

    Returns (Lambda (N/2,) complex128, P (r, N/2) complex128, B (N/2,) complex128, V (N, N/2)),
    with V = V_half; the full eigenbasis is [V, conj(V)] (unitary), and
    A = [V, conj V] (diag(Lambda, conj Lambda) - Pf Pf^*) [V, conj V]^* with Pf = [P; conj P]^T.
    Zero eigenvalues of the skew part (FouT) come in pairs and are combined as (w1 + i w2)/sqrt 2.
    """
    if N % 2:
        raise ValueError("N must be even for the conjugate-symmetric NPLR form")
    S = normal_part(measure, N)  # (N N)
    sym = (S + S.T) / 2
    c = np.trace(sym) / N
    if not np.allclose(sym, c * np.eye(N), atol=1e-8 * max(1.0, abs(c))):
        raise ValueError(f"normal part of {measure} is not scalar + skew")
    skew = (S - S.T) / 2  # (N N), real skew-symmetric
    mu, U = np.linalg.eigh(-1j * skew)  # eigenvalues of skew are i*mu
    tol = 1e-7 * max(1.0, np.abs(mu).max())
    pos = mu > tol
    vecs = [U[:, k] for k in np.nonzero(pos)[0]]
    lam = [1j * mu[k] for k in np.nonzero(pos)[0]]
    n_zero = int(np.sum(np.abs(mu) <= tol))
    if n_zero:
        # real orthonormal basis of the kernel of skew, paired into conjugate vectors
        _, s, vt = np.linalg.svd(skew)
        W = vt[-n_zero:].T  # (N z) real
        if n_zero % 2:
            raise ValueError("odd number of zero eigenvalues; cannot pair conjugates")
        for k in range(0, n_zero, 2):
            vecs.append((W[:, k] + 1j * W[:, k + 1]) / np.sqrt(2.0))
            lam.append(0j)
    V = np.stack(vecs, 1)  # (N N/2)
    lam = np.asarray(lam) + c  # (N/2)
    order = np.argsort(lam.imag, kind="stable")
    V, lam = V[:, order], lam[order]
    _, Bv = hippo(measure, N)
    P = low_rank(measure, N)
    Bt = V.conj().T @ Bv  # (N/2)
    Pt = P @ V.conj()  # (r N/2) = (V^* P^T)^T
    return lam, Pt, Bt, V
