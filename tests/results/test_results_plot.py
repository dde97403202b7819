"""``ssm plot``: one file per (ablation, dataset, preset, metric), mean ± std over seeds, one line
per configuration."""
import json

import pytest

from ssm_cli.errors import UserError
from ssm_cli.results.plot import mean_std, plot_curves
from tests.results.test_results_table import _run


def _with_epochs(root, variant, seed, d_state, accs, preset="smoke"):
    _run(root, variant, seed, d_state, accs[-1], preset=preset)
    [path] = [p for p in root.rglob("record.json") if f"/{variant}/seed{seed}-" in str(p)
              and json.loads((p.parent / "record.json").read_text()).get("preset") == preset
              and f"d_state: {d_state}" in (p.parent / "config.yaml").read_text()]
    record = json.loads(path.read_text())
    record["epochs"] = [{"epoch": i + 1, "val_acc": a, "train_loss": 1.0 / (i + 1)} for i, a in enumerate(accs)]
    path.write_text(json.dumps(record))


def test_mean_std_per_epoch():
    mean, std = mean_std([[10.0, 20.0, 30.0], [20.0, 40.0]])
    assert mean == [15.0, 30.0] and std == pytest.approx([7.0710678, 14.1421356], rel=1e-6)
    assert mean_std([[1.0, 2.0]]) == ([1.0, 2.0], [0.0, 0.0])


def test_one_file_per_ablation_dataset_preset_metric(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        _with_epochs(runs, "zoh", seed, 16, [10.0, 20.0, 30.0])
        _with_epochs(runs, "zoh", seed, 64, [50.0, 60.0, 70.0])
    _with_epochs(runs, "zoh", 0, 16, [1.0, 2.0], preset="cpu")
    out = tmp_path / "pictures"
    acc = plot_curves(runs, out, "val_acc")
    loss = plot_curves(runs, out, "train_loss", fmt="svg")
    assert sorted(p.name for p in acc) == ["curves-disc-synthetic-cpu-val_acc.png", "curves-disc-synthetic-smoke-val_acc.png"]
    assert sorted(p.name for p in loss) == ["curves-disc-synthetic-cpu-train_loss.svg", "curves-disc-synthetic-smoke-train_loss.svg"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in acc)
    svg = (out / "curves-disc-synthetic-smoke-train_loss.svg").read_text()
    # two configurations of zoh: two lines, each labelled by the key in which they differ
    assert "d_state=16 (n=2)" in svg and "d_state=64 (n=2)" in svg
    pdf = plot_curves(runs, out, "val_acc", fmt="pdf")
    assert all(p.read_bytes()[:5] == b"%PDF-" for p in pdf)
    with pytest.raises(UserError, match="valid: png, pdf, svg"):
        plot_curves(runs, out, "val_acc", fmt="jpg")
