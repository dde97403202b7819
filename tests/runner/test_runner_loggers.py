"""Logs (trainer.logger), sweeps from the override syntax, and the grid's progress display."""
import csv
import json
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

SMOKE = ["preset=smoke", "dataset.options.n_train=64", "dataset.options.n_val=32", "dataset.options.n_test=32"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def records(out: Path) -> dict:
    return {r["variant"]: r for r in (json.loads(p.read_text()) for p in out.rglob("record.json"))}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def table_rows(stdout: str, ablation: str) -> list[str]:
    return [line for line in ANSI.sub("", stdout).splitlines() if line.startswith("│") and ablation in line]


def test_sweep_dry_run_lists_the_variants(ssm, tmp_path):
    p = ssm("run", "model.d_state=16,32", "model.init=inv,lin", *SMOKE, f"out_dir={tmp_path / 'o'}", "--dry-run")
    for name in ("d_state=16,init=inv", "d_state=16,init=lin", "d_state=32,init=inv", "d_state=32,init=lin"):
        assert name in p.stdout, p.stdout
    assert "4 run(s)" in p.stdout
    assert not (tmp_path / "o").exists()
    p = ssm("run", "ablation=B", "model.d_state=range(8,17,8)", *SMOKE, "seeds=[0]", f"out_dir={tmp_path / 'o'}", "--dry-run")
    for name in ("trainable,d_state=8", "trainable,d_state=16", "frozen,d_state=8", "frozen,d_state=16"):
        assert name in p.stdout, p.stdout


def test_sweep_bad_input_is_named(tmp_path):
    from ssm_cli.cli.run_cmd import run_command
    from ssm_cli.errors import UserError
    from ssm_cli.train.grid import plan

    for args, words in ((["seeds=0,1"], r"seeds=\[0,1,2\]"), (["out_dir=a,b"], "cannot sweep out_dir"),
                        (["model.init=inv,bogus"], "unknown init 'bogus'"), (["model.d_state=interval(1,2)"], "only comma lists")):
        with pytest.raises(UserError, match=words):
            plan([*args, *SMOKE, f"out_dir={tmp_path / 'o'}"])
    with pytest.raises(UserError, match="drop --multirun"):
        run_command(["model.d_state=16,32", "--multirun"], dry_run=True, show_cfg=False, retry_failed=False)


def test_sweep_of_a_pack_logs_csv_per_member_and_tables_two_rows(ssm, tmp_path):
    """A sweep of two inits trained as one pack (serial, in this process): each member has its own
    step and epoch logs with its own metrics, the table has a row per value, the display names the
    runs, and a rerun skips both."""
    out = tmp_path / "o"
    args = ["run", "model.init=inv,lin", *SMOKE, "launcher.pack=2", "trainer.log_every_n_steps=1",
            "trainer.progress=true", f"out_dir={out}"]
    p = ssm(*args, env={"FORCE_COLOR": "1"})
    rs = records(out)
    assert set(rs) == {"init=inv", "init=lin"} and {r["status"] for r in rs.values()} == {"completed"}
    assert {Path(r["run_dir"]).parts[-4] for r in rs.values()} == {"sweep_init"}
    steps = {}
    for name, r in rs.items():
        logs = Path(r["run_dir"]) / "logs"
        rows = read_csv(logs / "steps.csv")
        assert list(rows[0]) == ["step", "epoch", "train_loss_step", "train_acc_step", "lr"]
        assert [int(x["step"]) for x in rows] == list(range(1, 7))  # 2 epochs x 3 batches, every step
        assert [int(x["epoch"]) for x in rows] == [1, 1, 1, 2, 2, 2]
        steps[name] = [float(x["train_loss_step"]) for x in rows]
        # the steps of an epoch average to its train loss (same batches, same sizes)
        for e in r["epochs"]:
            mean = sum(steps[name][3 * (e["epoch"] - 1):3 * e["epoch"]]) / 3
            assert abs(mean - e["train_loss"]) < 1e-5 * abs(e["train_loss"]), (name, mean, e["train_loss"])
        epochs = read_csv(logs / "epochs.csv")
        assert [int(x["epoch"]) for x in epochs] == [1, 2]
        assert {"val_acc", "val_loss", "train_loss", "test_acc"} <= set(epochs[0])
        best = r["best_epoch"]
        assert float(epochs[best - 1]["test_acc"]) == pytest.approx(r["result"])
        assert float(epochs[1]["val_acc"]) == pytest.approx(r["epochs"][1]["val_acc"])
    assert steps["init=inv"] != steps["init=lin"]  # each member logs its own loss
    assert len(table_rows(p.stdout, "sweep_init")) == 2, p.stdout
    plain = ANSI.sub("", p.stdout)
    assert "init=inv seed 0" in plain and "init=lin seed 0" in plain
    again = ssm(*args)
    assert "2 already done" in again.stdout


def test_progress_display_under_local_workers(ssm, tmp_path):
    """Two workers (launcher=local): their runs' bars show in the parent's display."""
    out = tmp_path / "o"
    p = ssm("run", "model.init=inv,lin", *SMOKE, "trainer.epochs=3", "launcher=local", "launcher.jobs=2",
            "trainer.progress=true", "trainer.logger=none", f"out_dir={out}", env={"FORCE_COLOR": "1"})
    plain = ANSI.sub("", p.stdout)
    for name in ("init=inv", "init=lin"):
        assert re.search(rf"{name} seed 0 .*epoch \d/3", plain), plain[-3000:]
    assert len(table_rows(p.stdout, "sweep_init")) == 2
    assert len(list(out.rglob("stdout.log"))) == 2  # they ran as workers
    assert not list(out.rglob("logs"))  # trainer.logger=none


def _fake_runs(tmp_path: Path, n: int = 2):
    class Run:
        def __init__(self, i):
            self.variant, self.seed, self.run_dir = f"v{i}", 0, tmp_path / f"v{i}"
            self.run_dir.mkdir()
    return [Run(i) for i in range(n)]


def test_display_shows_active_runs_and_drops_finished_ones(tmp_path):
    from rich.console import Console

    from ssm_cli.cli.progress import GridDisplay
    from ssm_cli.train.record import write_json_atomic

    runs = _fake_runs(tmp_path)
    console = Console(record=True, width=120, force_terminal=False)
    with GridDisplay(console, runs, runs) as d:
        write_json_atomic(runs[0].run_dir / "progress.json",
                          {"epoch": 2, "epochs": 5, "batch": 3, "batches": 10, "val": {"val_acc": 61.25}})
        d.poll_once()
        assert [t.description.strip() for t in d.progress.tasks] == ["[bold]grid", "v0 seed 0"]
        task = d.progress.tasks[1]
        assert (task.completed, task.total, task.fields["info"]) == (13, 50, "epoch 2/5 · val_acc 61.25")
        d.done(runs[0], "  v0 seed 0: completed")
        d.poll_once()
        assert len(d.progress.tasks) == 1 and d.progress.tasks[0].completed == 1
    assert "v0 seed 0: completed" in console.export_text()


def test_csv_resume_drops_the_steps_after_the_checkpoint(tmp_path):
    from ssm_cli.train.loggers import CsvLog

    log = CsvLog(tmp_path, 0)
    for step in range(1, 6):
        log.log_step(step, {"epoch": 1, "train_loss_step": float(step)})
    log = CsvLog(tmp_path, 3)  # resumed from a checkpoint at step 3: steps 4, 5 are computed again
    log.log_step(4, {"epoch": 1, "train_loss_step": 40.0})
    assert [(r["step"], r["train_loss_step"]) for r in read_csv(tmp_path / "steps.csv")] == [
        ("1", "1.0"), ("2", "2.0"), ("3", "3.0"), ("4", "40.0")]


def _scalars(folder: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_resume_purges_the_steps_after_the_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    from ssm_cli.train.loggers import TensorBoardLog

    log = TensorBoardLog(tmp_path, 0)
    for step in range(1, 6):
        log.log_step(step, {"epoch": 1, "train_loss_step": float(step)})
    log.close()
    log = TensorBoardLog(tmp_path, 3)
    log.log_step(4, {"epoch": 1, "train_loss_step": 40.0})
    log.close()
    assert _scalars(tmp_path / "tensorboard")["train_loss_step"] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_export_tensorboard_writes_readable_event_files(ssm, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "o"
    run_dir = out / "init" / "synthetic" / "inv" / "seed0-0123abcd"
    run_dir.mkdir(parents=True)
    epochs = [{"epoch": 1, "step": 10, "train_loss": 2.0, "val_acc": 30.0},
              {"epoch": 2, "step": 20, "train_loss": 1.5, "val_acc": 45.5, "test_acc": 44.0}]
    record = {"status": "completed", "ablation": "init", "dataset": "synthetic", "variant": "inv", "seed": 0,
              "run_dir": str(run_dir), "epochs": epochs, "metric": "test_acc", "result": 44.0, "preset": "cpu"}
    (run_dir / "record.json").write_text(json.dumps(record))
    p = ssm("export", "tensorboard", str(out))
    assert "1 run(s) exported" in p.stdout
    s = _scalars(out / "tensorboard" / "init" / "synthetic" / "inv" / "seed0-0123abcd")
    assert s["val_acc"] == [(10, 30.0), (20, 45.5)] and s["test_acc"] == [(20, 44.0)] and s["epoch"] == [(10, 1.0), (20, 2.0)]
    ssm("export", "tensorboard", str(out))  # again: the export replaces its files, no duplicates
    assert len(list((out / "tensorboard").rglob("events.out.tfevents.*"))) == 1


def test_wandb_offline_resume_reuses_the_run_id(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from ssm_cli.train.loggers import WANDB_ID, WandbLog

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = OmegaConf.create({"trainer": {"wandb_project": "ssm-test"}, "dataset": {"name": "synthetic"},
                            "run": {"ablation": "init", "variant": "inv", "seed": 0}})
    log = WandbLog(tmp_path, 0, cfg)
    first = log.run.id
    assert (log.run.group, log.run.name) == ("init/synthetic", "inv/seed0")
    log.log_step(1, {"train_loss_step": 1.0})
    log.log_epochs([{"epoch": 1, "step": 1, "val_acc": 10.0}], final=True)
    log.close()
    assert (tmp_path / WANDB_ID).read_text().strip() == first
    log = WandbLog(tmp_path, 1, cfg)  # the run resumed: the same W&B run
    assert log.run.id == first
    log.close()
    assert len(list((tmp_path / "wandb").glob(f"offline-run-*-{first}"))) >= 1


def test_a_missing_logger_package_is_named_before_anything_runs(monkeypatch, tmp_path):
    import importlib.util

    from ssm_cli.config import compose
    from ssm_cli.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install 'ssm-cli\[wandb\]'"):
        compose(["trainer.logger=wandb", f"out_dir={tmp_path}"])
    with pytest.raises(UserError, match="trainer.logger; valid: none, csv, tensorboard, wandb"):
        compose(["trainer.logger=mlflow", f"out_dir={tmp_path}"])
