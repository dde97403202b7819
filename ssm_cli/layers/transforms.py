"""Parameter transforms for the real and imaginary parts of A (docs/papers.md §1).

A = -f(a_re) + i g(a_im) with f, g in TRANSFORMS. ``relu`` adds 1e-4 so the real part stays
strictly negative. Each transform has an inverse used at initialisation; an init value outside
a transform's range is an error (e.g. ``sigmoid`` maps into (0, 1), so real parts below -1 or
imaginary parts above 1 cannot be represented).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError

TRANSFORMS = ("exp", "relu", "sigmoid", "softplus", "none")
_EPS = 1e-4


def transform(x: torch.Tensor, name: str) -> torch.Tensor:
    """Apply the named transform elementwise (any shape, real)."""
    if name == "exp":
        return torch.exp(x)
    if name == "relu":
        return F.relu(x) + _EPS
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "softplus":
        return F.softplus(x)
    if name == "none":
        return x
    raise UserError(f"unknown transform {name!r}; valid: {', '.join(TRANSFORMS)}")


def inverse(y: np.ndarray, name: str, what: str = "value") -> np.ndarray:
    """Raw parameter value x with transform(x) = y (float64 numpy); clamps y to the open range."""
    y = np.asarray(y, dtype=np.float64)
    if name == "none":
        return y.copy()
    if name == "sigmoid" and np.any(y >= 1.0):
        raise UserError(f"transform 'sigmoid' maps into (0, 1) but the init needs {what} up to {y.max():.3g}; "
                        "use exp, relu, softplus or none")
    if np.any(y < 0):
        raise UserError(f"transform {name!r} is positive but the init needs negative {what}")
    if name == "exp":
        return np.log(np.maximum(y, _EPS))
    if name == "relu":
        return np.maximum(y, _EPS) - _EPS
    if name == "sigmoid":
        y = np.clip(y, _EPS, 1 - _EPS)
        return np.log(y) - np.log1p(-y)
    if name == "softplus":
        y = np.maximum(y, _EPS)
        return y + np.log(-np.expm1(-y))
    raise UserError(f"unknown transform {name!r}; valid: {', '.join(TRANSFORMS)}")
