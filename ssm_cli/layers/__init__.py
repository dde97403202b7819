"""The SSM layer library: S4D / DSS / S4 cores, the backbone, optimizer groups.

    core = build("s4d", d_model=H, d_state=N, init="inv", disc="zoh")   # also "dss", "s4"
    y = core(u, rate=1.0)      # (B, L, H) -> (B, L, channels*H): the linear SSM incl. D
    k = core.kernel(L)         # (channels, H, L), or (2, channels, H, L) if bidirectional
    s = core.init_state(B)     # unidirectional cores: (B, H, M) complex
    y_t, s = core.step(u_t, s) # (B, H) -> (B, channels*H); L=... needed for disc=dss and for s4
    lam = core.eigenvalues()   # (n_ssm, M) complex: A after the transforms (s4: Lambda)

    model = SequenceModel(d_input, d_output, d_model=128, n_layers=4, core="s4d", core_options={...})
    groups = param_groups(model, lr=0.01, weight_decay=0.01); describe_groups(groups)

Every core is one module under ``cores/`` that registers its name and options
(``registry.register_core``); ``CORES`` / ``CORE_OPTIONS`` list them (filled once ``cores`` is imported).
"""
from __future__ import annotations

from .registry import CORE_OPTIONS, CORES, build, register_core, resolve

from . import cores  # noqa: E402,F401  (registers every core)
from .backbone import SequenceModel  # noqa: E402
from .optim import describe_groups, param_groups  # noqa: E402

__all__ = ["build", "register_core", "resolve", "CORES", "CORE_OPTIONS", "SequenceModel", "param_groups", "describe_groups"]
