"""Linear recurrences x_t = a * x_{t-1} + b_t with a time-invariant diagonal a (S5, docs/ptd-s5.md).

``scan`` is the parallel associative scan: the operator (a_i, b_i) . (a_j, b_j) = (a_j a_i,
a_j b_i + b_j) applied by doubling (Hillis-Steele), ceil(log2 L) passes, each one elementwise
multiply-add over the whole sequence; since a is the same at every step, the composed a of a
span of 2^k steps is a^(2^k), one squaring per pass. ``scan_sequential`` is the obviously-correct
reference loop. Both: a (P,) complex, b (B, L, P) complex -> x (B, L, P), x_0 = b_0.
"""
from __future__ import annotations

import torch


def scan(a: torch.Tensor, b: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """All states of x_t = a x_{t-1} + b_t (``reverse``: x_t = a x_{t+1} + b_t): (B, L, P)."""
    if reverse:
        return scan(a, b.flip(1)).flip(1)
    L = b.shape[1]
    x, a_span, d = b, a, 1  # a_span = a^d: the transition across d steps
    while d < L:
        x = torch.cat([x[:, :d], x[:, d:] + a_span * x[:, :-d]], dim=1)  # (B L P)
        a_span, d = a_span * a_span, 2 * d
    return x


def scan_sequential(a: torch.Tensor, b: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """The same states by a loop over t (the reference)."""
    steps = range(b.shape[1] - 1, -1, -1) if reverse else range(b.shape[1])
    x = torch.zeros_like(b[:, 0])  # (B P)
    out = [None] * b.shape[1]
    for t in steps:
        x = a * x + b[:, t]  # (B P)
        out[t] = x
    return torch.stack(out, 1)  # (B L P)
