"""conf/model/*.yaml against the core registry: every key a backbone key or a registered option
of its core, with a valid value equal to the registered default (the one place defaults live)."""
from pathlib import Path

import pytest
import yaml

from ssm_cli.layers.registry import CORE_OPTIONS, check_option, spec
from ssm_cli.model import BACKBONE_KEYS, BACKBONE_VALID
from ssm_cli.values import check

MODEL_CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
# values a run gets that differ from the library default, because they need what only a run has
# (S4's C_init C needs l_max, the data's sequence length)
RUN_DEFAULTS = {("s4", "C_init"), ("liquid_s4", "C_init")}


@pytest.mark.parametrize("path", sorted(MODEL_CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_model_yaml_agrees_with_the_registry(path):
    conf = yaml.safe_load(path.read_text())
    core = conf["core"]
    table = spec(core).options
    for key, value in conf.items():
        if key in BACKBONE_KEYS:
            if key in BACKBONE_VALID:
                check(f"model.{key}", value, BACKBONE_VALID[key])
            continue
        assert key in table, f"{path.name}: {key} is neither a backbone key nor an option of core {core!r}"
        check_option(core, key, value, table[key][0])
        if (core, key) not in RUN_DEFAULTS:
            assert value == table[key][1], f"{path.name}: {key}={value!r}, registered default {table[key][1]!r}"
    missing = sorted(set(table) - set(conf))
    assert not missing, f"{path.name} does not list the options {missing} of core {core!r}"


def test_every_registered_core_has_a_model_yaml():
    spec("s4d")  # imports every core
    assert {p.stem for p in MODEL_CONF.glob("*.yaml")} >= set(CORE_OPTIONS)
