"""DSS ("Diagonal State Spaces are as Effective as Structured State Spaces", Gupta et al. 2022) as
a configuration of the diagonal core: LegS-derived diagonal A, B fixed to ones, and the softmax
normalisation of the kernel over its L positions (``variant=softmax``, the paper's DSS-softmax;
``variant=exp``: plain ZOH, DSS-exp)."""
from __future__ import annotations

from ..init import DIAG_INITS
from ..options import DIAGONAL
from ..registry import register_core
from .s4d import DiagonalSSM

OPTIONS = {
    **{k: v for k, v in DIAGONAL.items() if k != "disc"},
    "variant": (("softmax", "exp"), "softmax"),   # softmax: disc=dss; exp: disc=zoh
    "init": (DIAG_INITS, "legs"),
    "dt_transform": (("exp", "softplus"), "exp"),
    "trainable_B": ((True, False), False),
    "B_init": (("auto", "ones", "random"), "ones"),
}


@register_core("dss", options=OPTIONS, doc="DSS: the diagonal core with DSS's softmax kernel normalisation (Gupta et al. 2022)")
def build_dss(d_model: int, d_state: int, *, variant: str, **options) -> DiagonalSSM:
    return DiagonalSSM(d_model, d_state, disc="dss" if variant == "softmax" else "zoh", **options)
