"""``ablation=ptd``: every model trains on CPU, its records and table carry clean and noisy accuracy."""
import json
from pathlib import Path

import pytest

SMOKE = ["preset=smoke", "trainer.epochs=1", "dataset.options.n_train=32", "dataset.options.n_val=16",
         "dataset.options.n_test=16"]


@pytest.mark.slow
def test_ptd_ablation_smoke_has_clean_and_noisy_columns(ssm, tmp_path):
    out = tmp_path / "runs"
    ssm("run", "ablation=ptd", "ablation.noise_omegas=[10.0]", f"out_dir={out}", *SMOKE,
        env={"SSM_PTD_CACHE": str(tmp_path / "ptd")}, timeout=600)
    rs = [json.loads(p.read_text()) for p in sorted(Path(out).rglob("record.json"))]
    assert {r["variant"] for r in rs} == {"s4d_inv", "s4d_legs", "s4_ptd", "s4", "s5", "s5_ptd"}
    assert {r["status"] for r in rs} == {"completed"}
    for r in rs:
        assert {"test_acc", "test_noise_acc", "test_noise10_acc"} <= set(r["best"])
        assert r["best"]["test_noise_loss"] != r["best"]["test_loss"]  # the noise reached the model
    md = ssm("table", str(out), "--format", "md").stdout
    header = md.splitlines()[0]
    assert "ours (mean ± std)" in header and "noisy: test_noise_acc" in header and "noisy: test_noise10_acc" in header
    assert md.count("| ptd |") == 6
