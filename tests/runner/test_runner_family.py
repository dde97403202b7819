"""ablation=family and the family's models through the real command line (CPU, smoke size)."""
import json
from pathlib import Path

SMOKE = ["preset=smoke", "dataset.options.n_train=32", "dataset.options.n_val=16", "dataset.options.n_test=16",
         "trainer.epochs=1"]
FAMILY = ("s4d_inv", "s4", "dss", "mega_ema", "gss", "sgconv", "liquid_s4", "dlr")


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.rglob("record.json"))]


def test_family_grid_runs_every_registered_core_and_prints_one_table(ssm, tmp_path):
    from ssm_cli.layers.registry import names

    out = tmp_path / "runs"
    p = ssm("run", "ablation=family", "seeds=[0]", f"out_dir={out}", *SMOKE, timeout=600)
    rs = records(out)
    has_s5 = "s5" in names()
    assert {r["variant"] for r in rs} == set(FAMILY) | ({"s5"} if has_s5 else set())
    assert {r["status"] for r in rs} == {"completed"}
    if not has_s5:
        assert "skips variant 's5'" in p.stderr and "needs the core 's5'" in p.stderr
    lines = [ln for ln in p.stdout.splitlines() if "│ family" in ln]
    assert [next(v for v in FAMILY if f" {v} " in ln) for ln in lines] == list(FAMILY)  # declared order


def test_single_model_run_gss(ssm, tmp_path):
    out = tmp_path / "runs"
    ssm("run", "model=gss", f"out_dir={out}", *SMOKE)
    (r,) = records(out)
    assert r["status"] == "completed"


def test_list_shows_the_family(ssm):
    p = ssm("list", "model")
    for name in ("mega_ema", "gss", "sgconv", "liquid_s4", "dlr"):
        assert name in p.stdout
    assert "family" in ssm("list", "ablation").stdout
