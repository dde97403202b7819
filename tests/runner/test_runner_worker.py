"""``launcher=local`` workers start early as the serial path does (the data read while Lightning is
imported) and compute what the serial path computes."""
import json
from pathlib import Path

SMOKE = ["preset=smoke", "dataset.options.n_train=64", "dataset.options.n_val=32", "dataset.options.n_test=32"]
TIMINGS = ("seconds", "samples_per_s")  # what may differ between two processes


def results(out: Path) -> dict:
    """variant -> what its record says it computed (timings left out)."""
    found = {}
    for path in out.rglob("record.json"):
        r = json.loads(path.read_text())
        assert r["status"] == "completed", r
        epochs = [{k: v for k, v in e.items() if not k.endswith(TIMINGS)} for e in r["epochs"]]
        found[r["variant"]] = (r["config_hash"], r["n_params"], r["best_epoch"], r["result"], epochs)
    return found


def test_local_workers_prefetch_and_match_the_serial_runs(ssm, tmp_path):
    grid = ["run", "ablation=B", "seeds=[0]", *SMOKE]
    ssm(*grid, f"out_dir={tmp_path / 'serial'}")
    ssm(*grid, "launcher=local", "launcher.jobs=2", f"out_dir={tmp_path / 'local'}", env={"SSM_TRACE": "1"})
    serial, local = results(tmp_path / "serial"), results(tmp_path / "local")
    assert set(serial) == {"trainable", "frozen"}
    assert local == serial
    logs = [p.read_text() for p in (tmp_path / "local").rglob("stdout.log")]
    assert len(logs) == 2
    for log in logs:
        assert "data read in the background: synthetic" in log, log
        assert "data loaded: synthetic (prefetched" in log, log


def test_local_with_a_single_unit_runs_in_this_process(ssm, tmp_path):
    """One pack holding the whole grid: no worker (no stdout.log), the run's start-up in this
    process's trace, the records complete."""
    out = tmp_path / "local"
    p = ssm("run", "ablation=B", "seeds=[0]", *SMOKE, "launcher=local", "launcher.jobs=2", "launcher.pack=2",
            f"out_dir={out}", env={"SSM_TRACE": "1"})
    assert "training code imported (Lightning)" in p.stderr, p.stderr
    assert not list(out.rglob("stdout.log"))
    found = results(out)
    assert set(found) == {"trainable", "frozen"}
