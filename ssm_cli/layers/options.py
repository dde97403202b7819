"""Option declarations shared by several cores (each core registers its own table,
``registry.register_core``): ``COMMON`` (every convolutional SSM core) and ``DIAGONAL`` (the
diagonal cores S4D and DSS). Entries are ``option: (valid, default)``; the default is the one a
run gets (``conf/model/<core>.yaml`` states the same values, ``tests/layers/test_layers_registry.py``).
"""
from __future__ import annotations

from ..values import Range
from .discretize import DISCS
from .init import DIAG_INITS
from .transforms import TRANSFORMS

_NONE = type(None)
_NUM = (int, float)

COMMON = {
    "bidirectional": ((False, True), False),   # two kernels (forward, backward in time), summed
    "channels": (Range(1, integer=True), 1),   # output copies: core output has channels * H features
    "n_ssm": (Range(1, integer=True, none=True), 1),  # copies of (A, B) shared across channels; None = H
    "dt_min": (Range(0, lo_open=True), 0.001),  # log dt ~ U[log dt_min, log dt_max]
    "dt_max": (Range(0, lo_open=True), 0.1),
    "lr": (Range(0), 0.001),                   # learning rate of dt, A, B (weight decay 0)
    "lr_C": (Range(0, none=True), None),       # learning rate of C (weight decay 0); None = global group
    "trainable_B": ((True, False), True),      # False: B is a buffer (no gradient, not optimised)
    "real_transform": (TRANSFORMS, "exp"),     # A = -f(a_re) + i g(a_im)
    "seed": ((int, _NONE), None),              # init seed (None: drawn from torch's RNG)
}

DIAGONAL = {
    **COMMON,
    "init": (DIAG_INITS, "inv"),
    "disc": (DISCS, "zoh"),
    "imag_transform": (TRANSFORMS, "none"),
    "dt_transform": (("exp", "softplus"), "softplus"),  # dt = f(log_dt); softplus: the reference pipeline's
    "real_random": ((False, True), False),
    "imag_random": ((False, True), False),
    "real_scale": (_NUM, 1.0),
    "imag_scale": (_NUM, 1.0),
    "B_init": (("auto", "ones", "random"), "auto"),  # auto: HiPPO's B for legs, else ones
    "block": (Range(1, integer=True, none=True), None),  # Vandermonde block length (None: automatic)
}
