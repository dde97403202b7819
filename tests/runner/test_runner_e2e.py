"""The real command line end to end on CPU: grids, records, resume after kill -9, NaN, tables."""
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SMOKE = ["preset=smoke", "dataset.options.n_train=64", "dataset.options.n_val=32", "dataset.options.n_test=32"]


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.rglob("record.json"))]


def test_smoke_grid_end_to_end_then_rerun_skips(ssm, tmp_path):
    out = tmp_path / "runs"
    p = ssm("run", "ablation=init", "seeds=[0,1]", f"out_dir={out}", *SMOKE)
    rs = records(out)
    assert len(rs) == 10 and {r["status"] for r in rs} == {"completed"}
    assert {(r["variant"], r["seed"]) for r in rs} == {(v, s) for v in ("inv", "lin", "legs", "real", "rand") for s in (0, 1)}
    r = rs[0]
    for key in ("config_hash", "overrides", "epochs", "best_epoch", "result", "wall_seconds", "samples_per_s",
                "n_params", "optimizer_groups", "environment"):
        assert r[key] is not None, key
    assert [e["epoch"] for e in r["epochs"]] == [1, 2]
    assert set(r["environment"]) >= {"python", "torch", "ssm", "git_commit", "device"}
    assert r["result"] == r["epochs"][r["best_epoch"] - 1]["test_acc"]
    for run_dir in {Path(r["run_dir"]) for r in rs}:
        assert (run_dir / "config.yaml").exists() and (run_dir / "last.ckpt").exists()
    assert "inv" in p.stdout and "ours (mean ± std)" in p.stdout
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("record.json")}
    again = ssm("run", "ablation=init", "seeds=[0,1]", f"out_dir={out}", *SMOKE)
    assert "10 already done" in again.stdout
    assert mtimes == {p: p.stat().st_mtime_ns for p in out.rglob("record.json")}


def test_table_formats(ssm, tmp_path):
    out = tmp_path / "runs"
    ssm("run", "ablation=disc", "seeds=[0,1]", f"out_dir={out}", *SMOKE)
    rows = json.loads(ssm("table", str(out), "--format", "json").stdout)
    assert [r["variant"] for r in rows] == ["zoh", "bilinear"]
    for row in rows:
        assert {"ablation", "dataset", "variant", "metric", "mean", "std", "n", "paper"} <= set(row)
        assert row["n"] == 2 and row["paper"] is None and 0 <= row["mean"] <= 100
    md = ssm("table", str(out), "--format", "md").stdout
    assert md.startswith("| ablation |") and "| zoh |" in md
    csv = ssm("table", str(out), "--format", "csv").stdout.splitlines()
    assert csv[0].startswith("ablation,dataset,preset,protocol,variant,overrides,config_hash,metric,mean,std,n,paper") and len(csv) == 3
    latex = ssm("table", str(out), "--format", "latex").stdout
    assert r"\begin{tabular}" in latex and r"$\pm$" in latex
    target = tmp_path / "t.md"
    ssm("table", str(out), "--format", "md", "--out", str(target))
    assert target.read_text() == md
    bad = ssm("table", str(out), "--format", "xls", check=False)
    assert bad.returncode == 2 and "valid: rich, md, csv, latex, json" in bad.stderr


def test_nan_loss_marks_run_diverged_and_grid_goes_on(ssm, tmp_path):
    out = tmp_path / "runs"
    # noise=inf makes every input infinite: the loss is NaN at the first step
    p = ssm("run", "ablation=disc", "seeds=[0]", f"out_dir={out}", *SMOKE, "dataset.options.noise=inf", check=False)
    assert p.returncode == 1
    rs = records(out)
    assert len(rs) == 2 and {r["status"] for r in rs} == {"diverged"}
    assert all(r["diverged_step"] == 0 for r in rs)
    assert "diverged" in ssm("table", str(out), "--format", "md").stdout
    # without --retry-failed they are skipped; with it they run again
    again = ssm("run", "ablation=disc", "seeds=[0]", f"out_dir={out}", *SMOKE, "dataset.options.noise=inf", check=False)
    assert "0 to run" in again.stdout
    # the grid is not complete: exit 1 and the line naming what is left and how to finish it
    assert again.returncode == 1 and "grid not complete: 0 of 2 run(s) completed; 2 diverged" in again.stderr
    assert "--retry-failed" in again.stderr
    retry = ssm("run", "ablation=disc", "seeds=[0]", f"out_dir={out}", *SMOKE, "dataset.options.noise=inf", "--retry-failed", check=False)
    assert "2 to run" in retry.stdout
    assert all(r["attempts"] == 2 for r in records(out))


@pytest.mark.parametrize("args, needle", [
    (["model.foo=1"], "valid keys of model"),
    (["model.init=nope"], "valid: inv, lin, legs, real, rand"),
    (["dataset=nope"], "Available options in 'dataset'"),
    (["dataset.options.bogus=1"], "valid keys of dataset.options"),
])
def test_bad_override_exits_2_before_running(ssm, tmp_path, args, needle):
    p = ssm("run", f"out_dir={tmp_path / 'runs'}", *args, check=False)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "runs").exists()


def test_dry_run_and_cfg(ssm, tmp_path):
    out = tmp_path / "runs"
    p = ssm("run", "ablation=B", f"out_dir={out}", "--dry-run")
    assert "trainable" in p.stdout and "frozen" in p.stdout and str(out) in p.stdout.replace("\n", "")
    assert not out.exists()
    c = ssm("run", "model.d_state=48", "--cfg")
    assert "d_state: 48" in c.stdout


def test_list(ssm):
    p = ssm("list")
    for name in ("init", "disc", "B", "real", "kernel", "synthetic", "scifar", "smoke", "cpu", "short", "paper"):
        assert name in p.stdout
    assert ssm("list", "nope", check=False).returncode == 2


def test_resume_after_kill_9_runs_every_run_exactly_once(ssm, tmp_path):
    """Kill the grid while a run is mid-training, rerun: every run completes once, epochs 1..E once."""
    out = tmp_path / "runs"
    args = ["ablation=disc", "seeds=[0]", f"out_dir={out}", "preset=smoke", "trainer.epochs=6", "trainer.limit_train_batches=8",
            "dataset.options.n_train=256", "dataset.options.n_val=32", "dataset.options.n_test=32"]
    env = {**os.environ, "SSM_DATA": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "ssm_cli.cli.main", "run", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    # wait until the first run has checkpointed at least one epoch but is not finished
    while time.time() < deadline:
        rs = records(out)
        if rs and rs[0]["status"] == "running" and len(rs[0]["epochs"]) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rs = records(out)
    assert rs and rs[0]["status"] == "running", "the kill did not land mid-run"
    ssm(*["run", *args])
    rs = records(out)
    assert len(rs) == 2 and {r["status"] for r in rs} == {"completed"}
    for r in rs:
        assert [e["epoch"] for e in r["epochs"]] == [1, 2, 3, 4, 5, 6]
    assert sorted(r["attempts"] for r in rs) == [1, 2]


def test_two_processes_never_run_the_same_run(tmp_path):
    from ssm_cli.train.grid import plan, prepare
    from ssm_cli.train.record import run_lock
    from ssm_cli.train.run import execute

    [r] = plan(["preset=smoke", f"out_dir={tmp_path}"])
    prepare(r)
    with run_lock(r.run_dir) as held:
        assert held
        locked = execute(r.run_dir)
        assert locked["status"] == "locked"
        assert locked["holder"] == {"host": platform.node(), "pid": os.getpid()}
    assert execute(r.run_dir)["status"] == "completed"


def test_launcher_local_runs_jobs_as_subprocesses(ssm, tmp_path):
    out = tmp_path / "runs"
    ssm("run", "ablation=B", "seeds=[0]", "launcher=local", "launcher.jobs=2", f"out_dir={out}", *SMOKE)
    rs = records(out)
    assert len(rs) == 2 and {r["status"] for r in rs} == {"completed"}
    assert all((Path(r["run_dir"]) / "stdout.log").exists() for r in rs)


def test_plot_writes_png(ssm, tmp_path):
    out = tmp_path / "runs"
    ssm("run", "ablation=B", "seeds=[0]", f"out_dir={out}", *SMOKE)
    p = ssm("plot", str(out))
    png = out / "curves-B-synthetic-smoke-val_acc.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
