"""Ad-hoc grids from the command line: ``ssm run model.d_state=16,32,64 model.init=inv,lin``.

Comma lists, ``range(...)`` and ``choice(...)`` in overrides are Hydra's sweep syntax; Hydra's own
parser reads them (``OverridesParser``) and its basic sweeper's expansion makes the cartesian
product (``BasicSweeper.split_arguments``), so every value Hydra accepts is accepted here, quoted
the same way. Each combination becomes a variant of a grid named after the swept keys
(``sweep_d_state+init``, or ``<ablation>_sweep_...`` on top of an ablation, whose variants are then
crossed with the combinations); a variant is named by its values (``d_state=16,init=inv``), so
its run directories, resume and table rows work as for any ablation.
"""
from __future__ import annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException

from ssm_cli.errors import UserError

# keys that say where or how a grid runs, or which grid: sweeping them makes no variants
NOT_SWEPT = ("ablation", "seeds", "out_dir", "data_dir", "name", "launcher", "preset")


def split_sweep(overrides: list[str]) -> tuple[list[str], list[str], list[list[str]]]:
    """``(fixed, keys, combinations)``: the overrides that sweep nothing (as given), the swept keys
    and every combination of their values as overrides (``["model.d_state=16", ...]``). No sweep:
    ``(overrides, [], [])``. Overrides Hydra cannot parse are left to the composition to report."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except (OverrideParseException, HydraException):
        return list(overrides), [], []
    fixed, sweeps = [], []
    for text, o in zip(overrides, parsed):
        if not o.is_sweep_override():
            fixed.append(text)
            continue
        key = o.get_key_element()
        if key.lstrip("+~").split(".")[0].split("/")[0] in NOT_SWEPT:
            raise UserError(f"cannot sweep {key} ({text!r}): a sweep makes variants of one grid; "
                            f"run one command per value" + (", or give the seeds as a list: seeds=[0,1,2]" if key == "seeds" else ""))
        if not o.is_discrete_sweep():
            raise UserError(f"cannot sweep {text!r}: only comma lists, range(...) and choice(...) make variants")
        sweeps.append(o)
    if not sweeps:
        return fixed, [], []
    try:
        combos = BasicSweeper.split_arguments(sweeps, None)[0]
    except HydraException as e:
        raise UserError(f"cannot expand the sweep: {e}") from None
    if not combos or any(not c for c in combos):
        raise UserError(f"the sweep {' '.join(o.input_line for o in sweeps)} has no values")
    return fixed, [o.get_key_element() for o in sweeps], combos


def short_names(keys: list[str]) -> list[str]:
    """Each key's last part (``model.d_state`` -> ``d_state``), or the whole key where two share it."""
    leaves = [k.lstrip("+~").split(".")[-1] for k in keys]
    return [leaf if leaves.count(leaf) == 1 else k.lstrip("+~") for k, leaf in zip(keys, leaves)]


def sweep_name(keys: list[str], ablation: str | None) -> str:
    """The grid's folder under out_dir: ``sweep_d_state+init`` or ``<ablation>_sweep_...``."""
    name = "sweep_" + "+".join(short_names(keys))
    return f"{ablation}_{name}" if ablation else name


def sweep_variants(keys: list[str], combos: list[list[str]], variants: list[dict] | None) -> list[dict]:
    """The grid's variants: one per combination (``{"name", "overrides", "paper"}``), or, over an
    ablation's ``variants``, each of them with each combination (the combination's values win)."""
    names = short_names(keys)
    own = [{"name": ",".join(f"{n}={o.split('=', 1)[1]}" for n, o in zip(names, combo)), "overrides": list(combo),
            "paper": None} for combo in combos]
    if not variants:
        return own
    return [{"name": f"{v['name']},{c['name']}", "overrides": list(v.get("overrides") or []) + c["overrides"],
             "paper": None} for v in variants for c in own]
