"""The core registry: every SSM core declares its name and options in its own module.

A core is one module under ``ssm_cli/layers/cores/`` (found and imported by ``cores/__init__``) that
calls ``register_core``::

    @register_core("toy", options={"decay": (Range(0, lo_open=True), 0.5)}, doc="...")
    class ToyCore(SSMCore): ...

``options`` maps each option to ``(valid, default)``: ``valid`` is a tuple of allowed values, a
``ssm_cli.values`` declaration (``Range``...), or a type / tuple of types (``type(None)``: None is
allowed). It is the one place the option's default lives: ``build`` fills it in and passes every
option by keyword (``d_model``, ``d_state`` positionally), and ``conf/model/<name>.yaml`` is checked
against it by a test (``tests/layers/test_layers_registry.py``). ``seq_len_option`` names an
option that, left None, a run sets to the data's sequence length (S4's ``l_max``). A core that
takes ``seed`` declares it as an option (the backbone passes seed + layer when one is set).
A test file can register a core too (``replace=True`` re-registers a name).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..errors import UserError
from ..values import check


@dataclass(frozen=True)
class CoreSpec:
    """One registered core: ``factory(d_model, d_state, **options)`` builds it."""

    name: str
    factory: Callable
    options: dict = field(default_factory=dict)   # option -> (valid, default)
    doc: str = ""
    seq_len_option: str | None = None  # option a run fills with the data's sequence length when None


CORES: dict[str, CoreSpec] = {}
# CORE_OPTIONS[name][option] = (valid, default): a view of CORES kept in step by register_core.
CORE_OPTIONS: dict[str, dict[str, tuple]] = {}
# Options that set the shape of a core's output (channels * H features; two-sided kernels), with
# the value of a core that does not have the option: the members of one pack must agree on them
# (``train/pack.py::pack_key``, ``backbone.check_packable``).
SHAPE_OPTIONS = {"bidirectional": False, "channels": 1}


def register_core(name: str, options: dict, doc: str = "", replace: bool = False,
                  seq_len_option: str | None = None):
    """Decorator for a core class (or factory function) registering it under ``name``."""
    def deco(factory):
        if name in CORES and not replace and CORES[name].factory is not factory:
            raise ValueError(f"core {name!r} is registered twice")
        if seq_len_option is not None and seq_len_option not in options:
            raise ValueError(f"core {name!r}: seq_len_option {seq_len_option!r} is not one of its options")
        CORES[name] = CoreSpec(name, factory, dict(options), doc or (factory.__doc__ or "").strip().split("\n")[0],
                               seq_len_option)
        CORE_OPTIONS[name] = CORES[name].options
        return factory
    return deco


def unregister_core(name: str) -> None:
    """Remove a core (tests that register a toy core clean up with this)."""
    CORES.pop(name, None)
    CORE_OPTIONS.pop(name, None)


def _is_types(valid) -> bool:
    if isinstance(valid, type):
        return True
    return isinstance(valid, tuple) and len(valid) > 0 and all(isinstance(v, type) for v in valid)


def check_option(core: str, key: str, value, valid) -> None:
    """UserError naming the option and its valid values when ``value`` is not valid."""
    if _is_types(valid):
        types = valid if isinstance(valid, tuple) else (valid,)
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            names = ", ".join("None" if t is type(None) else t.__name__ for t in types)
            raise UserError(f"invalid {key} {value!r} for core {core!r}; expected {names}")
        return
    if isinstance(valid, tuple):
        # booleans and numbers are distinct values here (True is not 1)
        if not any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in valid):
            raise UserError(f"unknown {key} {value!r}; valid: {', '.join(map(str, valid))}")
        return
    check(f"model.{key}", value, valid)


def spec(name: str) -> CoreSpec:
    from . import cores  # noqa: F401  (imports every core module, which registers it)
    if name not in CORES:
        raise UserError(f"unknown core {name!r}; valid: {', '.join(sorted(CORES))}")
    return CORES[name]


def resolve(name: str, options: dict) -> dict:
    """Every option of core ``name`` (defaults filled in); UserError on unknown names or values."""
    table = spec(name).options
    out = {k: d for k, (_, d) in table.items()}
    for k, v in options.items():
        if k not in table:
            raise UserError(f"unknown option {k!r} for core {name!r}; valid: {', '.join(table)}")
        check_option(name, k, v, table[k][0])
        out[k] = v
    return out


def build(name: str, d_model: int, d_state: int = 64, **options):
    """Build one SSM core by name; unknown options or invalid values raise UserError."""
    return spec(name).factory(d_model, d_state, **resolve(name, options))


def with_seq_len(name: str, options: dict, seq_len: int) -> dict:
    """``options`` with the core's ``seq_len_option`` set to ``seq_len`` where it is None (a copy)."""
    opt = spec(name).seq_len_option
    if opt is None or options.get(opt) is not None:
        return dict(options)
    return {**options, opt: seq_len}


def names() -> list[str]:
    """The registered cores' names, sorted."""
    spec("s4d")
    return sorted(CORES)
