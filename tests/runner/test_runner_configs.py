"""Every shipped config composes and validates; bad overrides fail before anything runs."""
import pytest

from ssm_cli.config import compose, group_options
from ssm_cli.errors import UserError
from ssm_cli.train.grid import plan


@pytest.mark.parametrize("dataset", group_options("dataset"))
def test_every_dataset_composes_with_paper_protocol(dataset):
    cfg = compose([f"dataset={dataset}", "preset=paper"])
    assert cfg.dataset.name == dataset
    assert cfg.preset.protocol is True
    assert cfg.protocol_seed is not None


@pytest.mark.parametrize("ablation", group_options("ablation"))
def test_every_ablation_plans_and_each_variant_differs(ablation, tmp_path):
    runs = plan([f"ablation={ablation}", f"out_dir={tmp_path}"])
    variants = {r.variant for r in runs}
    assert len(variants) >= 2
    hashes = {r.cfg.run.config_hash for r in runs}
    assert len(hashes) == len(variants), "two variants of a grid share a config hash"
    assert len({r.run_dir for r in runs}) == len(runs)


@pytest.mark.parametrize("group", ["model", "preset", "trainer", "optimizer", "scheduler", "launcher"])
def test_every_group_option_composes(group):
    for option in group_options(group):
        compose([f"{group}={option}"])


def test_short_preset_is_the_scifar_protocol_at_10_epochs():
    cfg = compose(["dataset=scifar", "preset=short"])
    m = cfg.model
    assert (m.n_layers, m.d_model, m.d_state, m.norm, m.prenorm, m.dropout, m.bidirectional, m.pool, m.final_act) == \
        (4, 128, 64, "layer", False, 0.1, True, "mean", "identity")
    assert (cfg.trainer.epochs, cfg.trainer.batch_size) == (10, 50)
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.model.lr) == (0.01, 0.01, 0.001)
    assert (cfg.scheduler.name, cfg.scheduler.warmup_steps) == ("cosine", 900)
    assert [r.seed for r in plan(["dataset=scifar", "preset=short", "ablation=init"])] == [1111] * 5


def test_user_override_beats_protocol():
    cfg = compose(["dataset=scifar", "preset=paper", "model.d_state=32", "trainer.epochs=3"])
    assert cfg.model.d_state == 32 and cfg.trainer.epochs == 3


def test_variant_overrides_apply(tmp_path):
    runs = plan(["ablation=init", "seeds=[0,1,2]", f"out_dir={tmp_path}"])
    assert len(runs) == 15
    assert {(r.variant, r.cfg.model.init) for r in runs} == {(v, v) for v in ("inv", "lin", "legs", "real", "rand")}
    assert {r.seed for r in runs} == {0, 1, 2}


@pytest.mark.parametrize("overrides, needle", [
    (["model.foo=1"], "valid keys of model"),
    (["model.init=foo"], "valid: inv, lin, legs, real, rand"),
    (["dataset=nope"], "Available options in 'dataset'"),
    (["ablation=nope"], "Available options in 'ablation'"),
    (["model.norm=group"], "valid: layer, batch"),
    (["trainer.precision=8"], "valid: 32-true"),
    (["trainer.test_at=last"], "invalid value 'last' for trainer.test_at; valid: best, every"),
    (["seeds=abc"], "invalid value 'abc' for seeds; valid: a non-empty list"),
    (["model.d_state=0"], "invalid value 0 for model.d_state; valid: an integer >= 1"),
    (["dataset=bidmc", "preset=short", "protocol=nope"], "Available options in 'protocol'"),
])
def test_bad_overrides_name_what_is_valid(overrides, needle):
    with pytest.raises(UserError) as e:
        plan(overrides)
    assert needle in str(e.value)
