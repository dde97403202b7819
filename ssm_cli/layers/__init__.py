"""The SSM layer library: S4D / DSS / S4 cores, the backbone, optimizer groups.

    core = build("s4d", d_model=H, d_state=N, init="inv", disc="zoh")   # also "dss", "s4"
    y = core(u)            # (B, L, H) -> (B, L, channels*H): the linear SSM incl. D
    k = core.kernel(L)     # (channels, H, L), or (2, channels, H, L) if bidirectional

Options, valid values and defaults: ``CORE_OPTIONS`` (see options.py).
"""
from __future__ import annotations

from .options import CORE_OPTIONS, resolve
from .s4d import DiagonalSSM


def build(name: str, d_model: int, d_state: int = 64, **options):
    """Build one SSM core by name (``s4d``, ``dss``, ``s4``); unknown options/values raise UserError."""
    opts = resolve(name, options)
    if name == "s4d":
        return DiagonalSSM(d_model, d_state, **opts)
    if name == "dss":
        variant = opts.pop("variant")
        return DiagonalSSM(d_model, d_state, disc="dss" if variant == "softmax" else "zoh", **opts)
    if name == "s4":
        from .s4 import DPLRSSM
        return DPLRSSM(d_model, d_state, **opts)
    raise AssertionError(name)


from .backbone import SequenceModel  # noqa: E402
from .optim import cosine_with_warmup, describe_groups, param_groups  # noqa: E402

__all__ = ["build", "CORE_OPTIONS", "SequenceModel", "param_groups", "describe_groups", "cosine_with_warmup"]
