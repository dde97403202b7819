"""``ssm table``: one row per configuration; two configurations of one variant are never averaged."""
import csv
import io
import json

import yaml

from ssm_cli.results.table import aggregate, load_records, render


def _run(root, variant, seed, d_state, result, *, config_hash=True, preset="smoke", protocol=False):
    """A run directory as ``ssm run`` leaves it: ``config.yaml`` (resolved) and ``record.json``."""
    from omegaconf import OmegaConf

    from ssm_cli.config import config_hash as hash_of

    config = {"dataset": {"name": "synthetic"}, "preset": {"name": preset, "protocol": protocol},
              "model": {"d_state": d_state, "init": "inv"}, "trainer": {"epochs": 2},
              "out_dir": str(root), "seeds": None,
              "run": {"ablation": "disc", "variant": variant, "seed": seed, "variant_index": 0}}
    h = hash_of(OmegaConf.create(config))
    run_dir = root / "disc" / "synthetic" / variant / f"seed{seed}-{h}"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    record = {"status": "completed", "ablation": "disc", "dataset": "synthetic", "variant": variant,
              "variant_index": 0, "seed": seed, "preset": preset, "metric": "test_acc", "paper": 80.0,
              "result": result, "overrides": []}
    if config_hash:
        record["config_hash"] = h
    (run_dir / "record.json").write_text(json.dumps(record))
    return h


def test_two_configurations_of_one_variant_are_two_rows(tmp_path):
    h16 = _run(tmp_path, "zoh", 0, 16, 10.0)
    _run(tmp_path, "zoh", 1, 16, 20.0)
    h64 = _run(tmp_path, "zoh", 0, 64, 90.0, config_hash=False)  # an older record: hash from config.yaml
    _run(tmp_path, "zoh", 1, 64, 94.0)
    _run(tmp_path, "bilinear", 0, 16, 50.0)
    rows = aggregate(load_records(tmp_path))
    zoh = {r["config_hash"]: r for r in rows if r["variant"] == "zoh"}
    assert set(zoh) == {h16, h64} and h16 != h64
    assert zoh[h16]["n"] == 2 and zoh[h16]["mean"] == 15.0 and zoh[h16]["seeds"] == [0, 1]
    assert zoh[h64]["n"] == 2 and zoh[h64]["mean"] == 92.0
    assert zoh[h16]["overrides"] == "model.d_state=16" and zoh[h64]["overrides"] == "model.d_state=64"
    bilinear = [r for r in rows if r["variant"] == "bilinear"]
    assert len(bilinear) == 1 and bilinear[0]["overrides"] == "" and bilinear[0]["flags"] == "missing seed 1"
    assert all(r["preset"] == "smoke" and r["protocol"] is None for r in rows)
    assert zoh[h64]["diff"] == 12.0


def test_every_format_shows_preset_protocol_and_overrides(tmp_path):
    _run(tmp_path, "zoh", 0, 16, 10.0, preset="short", protocol=True)
    _run(tmp_path, "zoh", 0, 64, 90.0, preset="short", protocol=True)
    rows = aggregate(load_records(tmp_path))
    js = json.loads(render(rows, "json"))
    assert [(r["preset"], r["protocol"], r["overrides"]) for r in js] == [
        ("short", "synthetic", "model.d_state=16"), ("short", "synthetic", "model.d_state=64")]
    table = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    assert [(r["preset"], r["protocol"], r["overrides"], r["n"]) for r in table] == [
        ("short", "synthetic", "model.d_state=16", "1"), ("short", "synthetic", "model.d_state=64", "1")]
    md = render(rows, "md")
    assert md.startswith("| ablation | dataset | preset | protocol | variant | overrides |")
    assert "| short | synthetic | zoh | model.d_state=64 |" in md
    latex = render(rows, "latex")
    assert r"model.d\_state=64" in latex and "short" in latex and latex.count(" \\\\\n") == 3  # header and two rows
    rich = render(rows, "rich")
    assert "short" in rich and "model.d_state=64" in rich and "preset" in rich


def test_record_hash_is_the_hash_of_its_config_yaml(tmp_path):
    """The seedless hash ``load_records`` computes for records without one is the one ``ssm run``
    records: the same config composed for two seeds has one hash."""
    from omegaconf import OmegaConf

    from ssm_cli.config import config_hash
    from ssm_cli.train.grid import plan, prepare

    runs = plan(["ablation=disc", "seeds=[0,1]", "preset=smoke", f"out_dir={tmp_path}"])
    assert len({r.cfg.run.config_hash for r in runs if r.variant == "zoh"}) == 1
    for r in runs:
        prepare(r)
        assert config_hash(OmegaConf.load(r.run_dir / "config.yaml")) == r.cfg.run.config_hash
