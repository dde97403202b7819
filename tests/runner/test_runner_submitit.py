"""``launcher=submitit_local`` (the code path of ``launcher=slurm`` through submitit's local
executor) end to end, a killed job resumed by resubmitting, the slurm launcher's submission, and
``ssm status``."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

pytest.importorskip("submitit")

from ssm_cli.launch.status import grid_states  # noqa: E402
from ssm_cli.results.table import aggregate, load_records  # noqa: E402

SMOKE = ["preset=smoke", "dataset.options.n_train=64", "dataset.options.n_val=32", "dataset.options.n_test=32",
         "trainer.accelerator=cpu"]
LOCAL = ["launcher=submitit_local", "launcher.poll_s=0.2"]


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/*/*/seed*/record.json"))]


def ssm_here(monkeypatch, capfd, *argv: str) -> str:
    """``ssm ARGV`` in this process (its jobs are processes of submitit's); returns its stdout."""
    from ssm_cli.cli import main as cli

    monkeypatch.setattr(sys, "argv", ["ssm", *argv])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out, err = capfd.readouterr()
    assert e.value.code == 0, out + err
    return out


def test_a_grid_through_submitit_local_is_recorded_and_tabled(tmp_path, monkeypatch, capfd):
    out = tmp_path / "out"
    stdout = ssm_here(monkeypatch, capfd, "run", "ablation=B", "seeds=[0]", *SMOKE, *LOCAL,
                      "launcher.array_parallelism=2", f"out_dir={out}")
    assert "submitted 2 job(s) via submitit (submitit_local)" in " ".join(stdout.split()), stdout
    rs = records(out)
    assert sorted(r["variant"] for r in rs) == ["frozen", "trainable"]
    for r in rs:
        assert r["status"] == "completed" and [e["epoch"] for e in r["epochs"]] == [1, 2], r
        job = json.loads((Path(r["run_dir"]) / "job.json").read_text())
        assert job["launcher"] == "submitit_local" and r["where"]["job_id"] == job["job_id"]
    assert "ssm results" in stdout  # the table printed at the end
    rows = aggregate(load_records(out))  # what `ssm table` shows
    assert sorted((row["variant"], row["n"]) for row in rows) == [("frozen", 1), ("trainable", 1)], rows
    assert [s.state for s in grid_states(out)] == ["done", "done"]


def _wait_for(predicate, timeout: float = 120.0):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_job_killed_mid_run_resumes_on_resubmission_and_records_each_epoch_once(tmp_path, monkeypatch, capfd):
    out = tmp_path / "out"
    args = ["run", *SMOKE, *LOCAL, "trainer.epochs=3", "trainer.limit_train_batches=null", f"out_dir={out}"]
    env = {**os.environ, "COLUMNS": "200", "SSM_DATA": str(tmp_path / "data")}
    first = subprocess.Popen([sys.executable, "-m", "ssm_cli.cli.main", *args], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def after_first_epoch():
        rs = records(out)
        return rs and rs[0]["status"] == "running" and len(rs[0]["epochs"]) >= 1 and rs[0]

    r = _wait_for(after_first_epoch)
    os.kill(r["where"]["pid"], signal.SIGKILL)  # the job's process: no chance to write anything
    first.communicate(timeout=120)
    assert first.returncode == 1  # the grid is not complete
    [killed] = records(out)
    assert killed["status"] == "running" and killed["epochs"]
    assert [s.state for s in grid_states(out)] == ["interrupted"]  # its process is gone
    ssm_here(monkeypatch, capfd, *args)
    [r] = records(out)
    assert r["status"] == "completed" and r["attempts"] == 2
    assert [e["epoch"] for e in r["epochs"]] == [1, 2, 3]
    assert r["epochs"][0] == killed["epochs"][0]  # resumed from its checkpoint, not started again
    [row] = aggregate(load_records(out))
    assert row["n"] == 1


def _slurm_cfg(*overrides: str):
    from ssm_cli.train.grid import plan

    return plan(["ablation=B", "preset=smoke", "launcher=slurm", *overrides])[0].cfg


SITE = ["launcher.partition=gpu", "launcher.account=lab", "launcher.qos=high", "launcher.time_min=90",
        "launcher.cpus_per_job=16", "launcher.mem_gb_per_job=64", "launcher.array_parallelism=4",
        "launcher.sbatch_extra={constraint: a100}", "trainer.devices=2", "launcher.gpus_per_job=2"]


def test_the_slurm_submission_carries_the_declared_resources(tmp_path, monkeypatch):
    from ssm_cli.launch.submit import executor_parameters, make_executor, sbatch_options

    cfg = _slurm_cfg(*SITE, f"out_dir={tmp_path}")
    params = executor_parameters(cfg)
    assert params == {"name": "ssm-B-synthetic", "timeout_min": 90, "gpus_per_node": 2, "tasks_per_node": 2,
                      "nodes": 1, "cpus_per_task": 8, "mem_gb": 64, "slurm_partition": "gpu",
                      "slurm_account": "lab", "slurm_qos": "high", "slurm_array_parallelism": 4,
                      "slurm_additional_parameters": {"constraint": "a100"}}
    header = sbatch_options(params, 6, str(tmp_path / ".submitit")).splitlines()
    for line in ("--partition=gpu", "--account=lab", "--qos=high", "--time=90", "--gpus-per-node=2",
                 "--ntasks-per-node=2", "--cpus-per-task=8", "--mem=64GB", "--array=0-5%4", "--constraint=a100"):
        assert f"#SBATCH {line}" in header, (line, header)
    # submitit's own SlurmExecutor takes them too (it needs an srun on PATH: a stand-in here)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    native = make_executor(cfg)._executor.parameters
    assert {k: native[k] for k in ("partition", "account", "qos", "time", "gpus_per_node", "ntasks_per_node",
                                   "cpus_per_task", "mem", "array_parallelism")} == {
        "partition": "gpu", "account": "lab", "qos": "high", "time": 90, "gpus_per_node": 2, "ntasks_per_node": 2,
        "cpus_per_task": 8, "mem": "64GB", "array_parallelism": 4}


def test_devices_must_match_the_gpus_of_a_slurm_job(tmp_path):
    from ssm_cli.errors import UserError
    from ssm_cli.launch.submit import executor_parameters

    with pytest.raises(UserError, match="launcher.gpus_per_job=2"):
        executor_parameters(_slurm_cfg("trainer.devices=2", "launcher.gpus_per_job=1", f"out_dir={tmp_path}"))


def test_dry_run_prints_the_jobs_and_their_resources(ssm, tmp_path):
    p = ssm("run", "ablation=B", "seeds=[0]", "preset=smoke", "launcher=slurm", *SITE, f"out_dir={tmp_path}", "--dry-run")
    text = p.stdout
    assert "launcher=slurm: 2 job(s)" in text and "job 0: trainable seed 0" in text and "job 1: frozen seed 0" in text
    assert "#SBATCH --partition=gpu" in text and "#SBATCH --array=0-1%2" in text, text
    assert not list(tmp_path.glob("*/*/*/seed*/record.json"))  # nothing submitted, nothing run


def test_status_shows_queued_failed_with_its_log_and_not_started(tmp_path, capsys):
    def run_dir(name: str) -> Path:
        d = tmp_path / "B" / "synthetic" / name / "seed0-abc"
        d.mkdir(parents=True)
        OmegaConf.save(OmegaConf.create({"x": 1}), d / "config.yaml")
        return d

    queued, failed, new = run_dir("queued"), run_dir("failed"), run_dir("new")
    (queued / "job.json").write_text(json.dumps({"launcher": "slurm", "job_id": "77_3", "folder": str(tmp_path)}))
    (failed / "job.json").write_text(json.dumps({"launcher": "slurm", "job_id": "77_4", "folder": str(tmp_path)}))
    (tmp_path / "77_4_0_log.err").write_text("".join(f"line {i}\n" for i in range(20)) + "CUDA out of memory\n")
    (failed / "record.json").write_text(json.dumps({"status": "failed", "error": "OutOfMemoryError: CUDA"}))
    states = {s.variant: s for s in grid_states(tmp_path)}
    assert states["queued"].state == "queued" and "77_3" in states["queued"].where
    assert states["failed"].state == "failed" and states["failed"].log_tail[-1] == "CUDA out of memory"
    assert len(states["failed"].log_tail) == 8
    assert states["new"].state == "not started"


def test_the_checkpoint_hook_requeues_the_same_unit_and_stops_its_worker(tmp_path):
    """What submitit calls before a time limit or on pre-emption (the job is then requeued)."""
    import submitit

    from ssm_cli.launch.submit import UnitJob

    job = UnitJob()
    job.worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    again = job.checkpoint(["/runs/a", "/runs/b"])
    assert job.worker.poll() is not None  # stopped (SIGTERM)
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert isinstance(again.function, UnitJob) and again.args == (["/runs/a", "/runs/b"],)


def _fake_sacct(tmp_path: Path, monkeypatch, lines: list[str]) -> None:
    """An ``sacct`` on PATH answering as SLURM does (``--parsable2``: JobID|State|NodeList)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    text = "\n".join(["JobID|State|NodeList", *lines])
    (bin_dir / "sacct").write_text(f"#!/bin/sh\ncat <<'EOF'\n{text}\nEOF\n")
    (bin_dir / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_units_whose_slurm_jobs_have_not_ended_are_not_submitted_again(tmp_path, monkeypatch):
    from ssm_cli.launch.status import run_state
    from ssm_cli.launch.submit import active_units
    from ssm_cli.train.grid import plan, prepare

    runs = plan(["ablation=B", "seeds=[0]", "preset=smoke", "launcher=slurm", f"out_dir={tmp_path / 'out'}"])
    for r, job_id in zip(runs, ("90_0", "90_1")):
        prepare(r)
        (r.run_dir / "job.json").write_text(json.dumps({"launcher": "slurm", "job_id": job_id,
                                                        "folder": str(tmp_path / "out" / ".submitit")}))
    _fake_sacct(tmp_path, monkeypatch, ["90_0|PENDING|None assigned", "90_1|CANCELLED by 1000|"])
    assert active_units([[r] for r in runs]) == [[runs[0]]]
    waiting, ended = run_state(runs[0].run_dir), run_state(runs[1].run_dir)
    assert waiting.state == "queued" and "PENDING" in waiting.where
    assert ended.state == "not started" and "CANCELLED" in ended.where


def test_a_job_signalled_before_its_time_limit_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    """submitit's pre-emption/time-limit signal (USR2, as SLURM's --signal sends it): the hook
    requeues the unit, the run stops recorded interrupted, and the requeued job resumes it."""
    from ssm_cli.launch.submit import UnitJob, make_executor
    from ssm_cli.train.grid import plan, prepare

    [run] = plan([*SMOKE, *LOCAL, "trainer.epochs=3", "trainer.limit_train_batches=null", f"out_dir={tmp_path}"])
    prepare(run)
    job = make_executor(run.cfg).submit(UnitJob(), [str(run.run_dir)])

    def after_first_epoch():
        rs = records(tmp_path)
        return rs and rs[0]["status"] == "running" and len(rs[0]["epochs"]) >= 1 and rs[0]

    first = _wait_for(after_first_epoch)
    os.kill(first["where"]["pid"], signal.SIGUSR2)  # what SLURM sends the job's tasks before the end (--signal)
    assert job.result() == 0
    [r] = records(tmp_path)
    assert r["status"] == "completed" and r["attempts"] == 2, r
    assert [e["epoch"] for e in r["epochs"]] == [1, 2, 3]
    assert r["epochs"][0] == first["epochs"][0]
