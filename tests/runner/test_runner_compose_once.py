"""A grid composes each variant's config once, guessing the protocol from its base config, and the
configs are those of the two-step composition (``compose`` without a guess: the reference)."""
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ssm_cli import config
from ssm_cli.config import CONF_DIR, compose, group_options
from ssm_cli.errors import UserError
from ssm_cli.train.grid import available_variants, plan


def test_protocol_files_set_neither_preset_nor_dataset():
    """The single composition is correct because a protocol cannot change the preset or the
    dataset that selected it (``config.compose``)."""
    for path in sorted(Path(CONF_DIR, "protocol").glob("*.yaml")):
        text = path.read_text()
        assert text.startswith("# @package _global_"), f"{path.name}: a protocol is a _global_ package"
        keys = set(OmegaConf.load(path).keys())
        assert not keys & {"preset", "dataset", "defaults"}, f"{path.name} sets {sorted(keys & {'preset', 'dataset', 'defaults'})}"


def compose_two_step(overrides: list[str]):
    """``config.compose`` as it was before it took a guess (the reference): a first composition to
    learn the preset and the dataset, a second with the protocol and epochs they add."""
    cfg = config._compose(overrides)
    extra = []
    if cfg.preset.get("protocol"):
        if not any(o.split("=")[0] == "protocol" for o in overrides):
            name = cfg.dataset.name
            if name not in group_options("protocol"):
                raise UserError(f"preset={cfg.preset.name} needs the authors' protocol for dataset {name!r}, "
                                f"but none exists; datasets with a protocol: {', '.join(group_options('protocol'))}")
            extra.append(f"protocol={name}")
        if cfg.preset.get("epochs"):
            extra.append(f"trainer.epochs={cfg.preset.epochs}")
        cfg = config._compose(extra + overrides)
    config.validate(cfg)
    return cfg


def reference_configs(overrides: list[str]) -> list:
    """Each variant's config as ``plan`` composed it before: two compositions per variant."""
    base = compose_two_step(overrides)
    if base.get("ablation") is None:
        return [base]
    variants = OmegaConf.to_container(base.ablation.variants, resolve=True)
    kept = [v["name"] for v in available_variants(base.ablation.name, variants)]  # plan skips the others
    return {i: compose_two_step(overrides + list(v["overrides"])) if v.get("overrides") else base
            for i, v in enumerate(variants) if v["name"] in kept}


def without_run(cfg) -> dict:
    data = OmegaConf.to_container(cfg, resolve=False)
    data.pop("run", None)
    return data


# every ablation on sCIFAR at preset=short (the grids of `make reproduce-short`), every dataset
# and every preset with a 2-variant ablation, a single run, explicit protocol and epochs
CASES = ([[f"ablation={a}", "dataset=scifar", "preset=short"] for a in group_options("ablation")]
         + [["ablation=B", f"dataset={d}", f"preset={p}"]
            for d, p in zip(group_options("dataset"), ["paper", "short", "cpu", "smoke"] * 4)]
         + [["dataset=lra_image", "preset=short"],
            ["ablation=disc", "dataset=bidmc", "preset=paper", "protocol=scifar"],
            ["ablation=real", "dataset=listops", "preset=short", "trainer.epochs=3", "model.d_state=16"]])


@pytest.mark.parametrize("overrides", CASES, ids=[" ".join(c) for c in CASES])
def test_plan_gives_the_two_step_configs(overrides, tmp_path):
    overrides = overrides + [f"out_dir={tmp_path}"]
    runs = plan(overrides)
    refs = reference_configs(overrides)
    by_variant = {}
    for r in runs:
        by_variant.setdefault(r.cfg.run.variant_index, r.cfg)
    refs = refs if isinstance(refs, dict) else dict(enumerate(refs))
    assert sorted(by_variant) == sorted(refs)
    for index, ref in refs.items():
        assert without_run(by_variant[index]) == without_run(ref), overrides


def test_a_variant_is_composed_once(monkeypatch, tmp_path):
    calls = []
    real = config._compose
    monkeypatch.setattr(config, "_compose", lambda overrides: calls.append(overrides) or real(overrides))
    runs = plan(["ablation=init", "dataset=scifar", "preset=short", f"out_dir={tmp_path}"])
    assert len(runs) == 5
    assert len(calls) == 2 + 5, calls  # the base: two (it has nothing to guess from); each variant: one


@pytest.mark.parametrize("overrides, guess", [
    (["dataset=sc35", "preset=short"], ["protocol=scifar", "trainer.epochs=10"]),  # another dataset
    (["dataset=sc35", "preset=short"], []),                                        # a protocol preset
    (["dataset=sc35", "preset=cpu"], ["protocol=sc35", "trainer.epochs=10"]),      # no protocol
    (["dataset=sc35", "preset=paper"], ["protocol=sc35", "trainer.epochs=10"]),    # other epochs
    (["dataset=sc35", "preset=short", "protocol=scifar"], ["protocol=sc35", "trainer.epochs=10"]),
    (["dataset=sc35", "preset=short"], ["protocol=nope"]),                         # one that fails
])
def test_a_wrong_guess_gives_the_reference_config(overrides, guess):
    reference = OmegaConf.to_container(compose_two_step(overrides))
    assert OmegaConf.to_container(compose(overrides, guess=guess)) == reference
    assert OmegaConf.to_container(compose(overrides)) == reference


def test_a_wrong_guess_reports_the_reference_error():
    with pytest.raises(UserError) as guessed:
        compose(["dataset=sc35", "preset=short", "model.init=foo"], guess=["protocol=scifar"])
    with pytest.raises(UserError) as reference:
        compose_two_step(["dataset=sc35", "preset=short", "model.init=foo"])
    assert str(guessed.value) == str(reference.value)
