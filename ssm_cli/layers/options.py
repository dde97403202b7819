"""CORE_OPTIONS: every option of every core, with its valid values (or type) and default.

``CORE_OPTIONS[core][option] = (valid, default)``; ``valid`` is a tuple of allowed values, a
``Range`` of numbers (``ssm_cli.values``), or a type / tuple of types (``type(None)`` means None is
allowed). The runner routes
flat ``model.*`` config keys with this table and ``build`` validates against it.
"""
from __future__ import annotations

from ..errors import UserError
from ..values import Range, check
from .discretize import DISCS
from .hippo import MEASURES
from .init import DIAG_INITS
from .transforms import TRANSFORMS

_NONE = type(None)
_NUM = (int, float)

_COMMON = {
    "bidirectional": ((False, True), False),   # two kernels (forward, backward in time), summed
    "channels": (Range(1, integer=True), 1),   # output copies: core output has channels * H features
    "n_ssm": (Range(1, integer=True, none=True), None),  # copies of (A, B) shared across channels; None = H
    "dt_min": (Range(0, lo_open=True), 0.001),  # log dt ~ U[log dt_min, log dt_max]
    "dt_max": (Range(0, lo_open=True), 0.1),
    "lr": (Range(0), 0.001),                   # learning rate of dt, A, B (weight decay 0)
    "lr_C": (Range(0, none=True), None),       # learning rate of C (weight decay 0); None = global group
    "trainable_B": ((True, False), True),      # False: B is a buffer (no gradient, not optimised)
    "real_transform": (TRANSFORMS, "exp"),     # A = -f(a_re) + i g(a_im)
    "seed": ((int, _NONE), None),              # init seed (None: drawn from torch's RNG)
}

_DIAG = {
    **_COMMON,
    "init": (DIAG_INITS, "inv"),
    "disc": (DISCS, "zoh"),
    "imag_transform": (TRANSFORMS, "none"),
    "dt_transform": (("exp", "softplus"), "exp"),  # dt = f(log_dt); softplus: the reference pipeline's
    "real_random": ((False, True), False),
    "imag_random": ((False, True), False),
    "real_scale": (_NUM, 1.0),
    "imag_scale": (_NUM, 1.0),
    "B_init": (("auto", "ones", "random"), "auto"),  # auto: HiPPO's B for legs, else ones
    "block": (Range(1, integer=True, none=True), None),  # Vandermonde block length (None: automatic)
}

CORE_OPTIONS: dict[str, dict[str, tuple]] = {
    "s4d": _DIAG,
    "dss": {**{k: v for k, v in _DIAG.items() if k != "disc"},
            "variant": (("softmax", "exp"), "softmax"),   # softmax: disc=dss; exp: disc=zoh
            "init": (DIAG_INITS, "legs"),
            "trainable_B": ((True, False), False),
            "B_init": (("auto", "ones", "random"), "ones")},
    "s4": {**_COMMON,
           "init": (MEASURES, "legs"),
           "dt_transform": (("exp", "softplus"), "exp"),  # dt = f(log_dt); softplus: the reference pipeline's
           "B_clip": ((float, int, _NONE), None),        # |Im B| bound after the projection (reference: 2.0)
           "C_init": (("C", "C_tilde"), "C_tilde"),      # C: C ~ N, C~ = C (I - Abar^l_max) (reference)
           "l_max": ((int, _NONE), None)},               # length of the stored C~ (model.l_max null: the data's)
}


def _is_types(valid) -> bool:
    if isinstance(valid, type):
        return True
    return isinstance(valid, tuple) and all(isinstance(v, type) for v in valid)


def resolve(core: str, options: dict) -> dict:
    """Full option dict for ``core`` (defaults filled in); UserError on unknown names or values."""
    if core not in CORE_OPTIONS:
        raise UserError(f"unknown core {core!r}; valid: {', '.join(CORE_OPTIONS)}")
    table = CORE_OPTIONS[core]
    out = {k: d for k, (_, d) in table.items()}
    for k, v in options.items():
        if k not in table:
            raise UserError(f"unknown option {k!r} for core {core!r}; valid: {', '.join(table)}")
        valid = table[k][0]
        if isinstance(valid, Range):
            check(f"model.{k}", v, valid)
        elif _is_types(valid):
            types = valid if isinstance(valid, tuple) else (valid,)
            if isinstance(v, bool) or not isinstance(v, types):
                names = ", ".join("None" if t is _NONE else t.__name__ for t in types)
                raise UserError(f"invalid {k} {v!r} for core {core!r}; expected {names}")
        elif v not in valid or (isinstance(v, bool) != isinstance(valid[0], bool)):
            raise UserError(f"unknown {k} {v!r}; valid: {', '.join(map(str, valid))}")
        out[k] = v
    return out
