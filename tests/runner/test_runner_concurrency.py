"""Two grids on one out_dir: a run another process holds is reported with its holder and skipped,
the grid goes on and exits 1 (not everything completed), and a rerun completes it; every run is
trained exactly once."""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

SMOKE = ["preset=smoke", "dataset.options.n_train=64", "dataset.options.n_val=32", "dataset.options.n_test=32"]


def records(out: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in sorted(out.rglob("record.json"))}


def test_a_run_held_elsewhere_is_reported_skipped_and_completed_by_a_rerun(ssm, tmp_path):
    """Under launcher=local (the worker says which runs it found held: exit code LOCKED_EXIT)."""
    from ssm_cli.train.grid import plan, prepare
    from ssm_cli.train.record import run_lock

    out = tmp_path / "runs"
    args = ["run", "ablation=B", "seeds=[0]", "launcher=local", "launcher.jobs=2", f"out_dir={out}", *SMOKE]
    held = [r for r in plan(args[1:]) if r.variant == "frozen"]
    assert len(held) == 1
    prepare(held[0])
    with run_lock(held[0].run_dir):  # this test process is the "other" holder
        p = ssm(*args, check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"running elsewhere (host {platform.node()}, pid {os.getpid()}); skipped" in p.stdout
    assert "1 running elsewhere" in p.stderr and "grid not complete: 1 of 2" in p.stderr
    rs = records(out)
    assert [r["status"] for d, r in rs.items() if d != held[0].run_dir] == ["completed"]
    assert held[0].run_dir not in rs or rs[held[0].run_dir]["status"] != "running"
    again = ssm(*args)
    assert "1 to run" in again.stdout
    assert {r["status"] for r in records(out).values()} == {"completed"}


def test_two_grids_at_once_record_every_run_exactly_once(tmp_path):
    out = tmp_path / "runs"
    args = [sys.executable, "-m", "ssm_cli.cli.main", "run", "ablation=disc", "seeds=[0]", f"out_dir={out}", *SMOKE]
    env = {**os.environ, "COLUMNS": "200", "SSM_DATA": str(tmp_path / "data")}
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode in (0, 1), stdout + stderr
        assert "Traceback" not in stderr and "MarkupError" not in stdout + stderr
    subprocess.run(args, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    rs = records(out)
    assert len(rs) == 2 and {r["status"] for r in rs.values()} == {"completed"}
    assert {(r["variant"], r["seed"]) for r in rs.values()} == {(v, s) for v in ("zoh", "bilinear") for s in (0,)}
    assert all(r["attempts"] == 1 for r in rs.values())  # nothing trained twice, nothing half-trained
