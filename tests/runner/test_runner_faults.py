"""Fault injection: a corrupt checkpoint, Ctrl-C during data setup and during training, SIGTERM
mid-grid, bad values, corrupt records, a corrupt WAV and cache file, unwritable paths. Each time:
no traceback, a clear message, and after the rerun every run of the grid completed exactly once.

Most cases run the real command line in this process (``cli.main``: fast, no second start-up);
SIGTERM from outside runs it as a subprocess."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ssm_cli.cli import main as cli
from ssm_cli.errors import UserError
from tests.data.fixtures import write_speech_commands

SMOKE = ["preset=smoke", "dataset.options.n_train=32", "dataset.options.n_val=16", "dataset.options.n_test=16",
         "trainer.limit_train_batches=2", "trainer.limit_eval_batches=1"]


@pytest.fixture
def ssm_here(monkeypatch, capfd):
    """Run ``ssm ARGS`` in this process; returns (exit code, stdout, stderr). Fails on a traceback."""

    def run(*argv: str):
        monkeypatch.setattr(sys, "argv", ["ssm", *argv])
        with pytest.raises(SystemExit) as e:
            cli.main()
        out, err = capfd.readouterr()
        assert "Traceback" not in out + err, out + err
        return e.value.code, out, err

    return run


def records(out_dir: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(out_dir)): json.loads(p.read_text()) for p in sorted(Path(out_dir).rglob("record.json"))}


def assert_each_completed_once(out_dir: Path, n_runs: int, epochs: int) -> dict[str, dict]:
    """Every run completed, each epoch computed and recorded exactly once."""
    rs = records(out_dir)
    assert len(rs) == n_runs, list(rs)
    for name, r in rs.items():
        assert r["status"] == "completed", (name, r["status"], r.get("error"))
        assert [e["epoch"] for e in r["epochs"]] == list(range(1, epochs + 1)), name
    return rs


# ---- 1. a corrupt last.ckpt ------------------------------------------------------------------------

def test_a_corrupt_checkpoint_is_set_aside_and_the_run_starts_again(ssm_here, tmp_path):
    out = tmp_path / "runs"
    args = ["run", *SMOKE, f"out_dir={out}", "seeds=[0]"]
    assert ssm_here(*args)[0] == 0
    [(name, r)] = records(out).items()
    run_dir = out / name
    ckpt = run_dir / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])  # truncated, as by a full disk
    r.update(status="running")  # killed while it trained
    (run_dir / "record.json").write_text(json.dumps(r))
    code, _, err = ssm_here(*args)
    assert code == 0
    assert f"checkpoint {ckpt} cannot be read" in " ".join(err.split()) and "from scratch" in err
    assert (run_dir / "last.ckpt.corrupt").exists() and ckpt.exists()
    [r] = assert_each_completed_once(out, 1, 2).values()
    assert r["restarted"]["corrupt_checkpoint"].endswith("last.ckpt.corrupt") and r["attempts"] == 2


# ---- 2. Ctrl-C while a run sets up its data, and while it trains --------------------------------------

def test_ctrl_c_during_data_setup_leaves_the_run_resumable(ssm_here, tmp_path, monkeypatch):
    import ssm_cli.data

    real = ssm_cli.data.load_dataset

    def interrupted(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)  # the terminal's Ctrl-C
        return real(*a, **k)

    monkeypatch.setattr(ssm_cli.data, "load_dataset", interrupted)
    out = tmp_path / "runs"
    args = ["run", *SMOKE, f"out_dir={out}", "seeds=[0]"]
    code, _, err = ssm_here(*args)
    assert code == 130
    [r] = records(out).values()
    assert r["status"] == "interrupted"
    assert "grid not complete: 0 of 1 run(s) completed; 1 interrupted. To finish: ssm run" in " ".join(err.split())
    monkeypatch.setattr(ssm_cli.data, "load_dataset", real)
    assert ssm_here(*args)[0] == 0
    [r] = assert_each_completed_once(out, 1, 2).values()
    assert r["attempts"] == 2


def test_ctrl_c_during_training_stops_the_grid_resumable(ssm_here, tmp_path, monkeypatch):
    from ssm_cli.train.checkpoint import RecordKeeper

    real = RecordKeeper.on_train_epoch_end
    calls = []

    def end_of_epoch(self, trainer, task):
        real(self, trainer, task)
        calls.append(1)
        if len(calls) == 1:  # after the first epoch of the first run (its checkpoint written)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(RecordKeeper, "on_train_epoch_end", end_of_epoch)
    out = tmp_path / "runs"
    args = ["run", "ablation=disc", *SMOKE, f"out_dir={out}", "seeds=[0]"]
    code, _, err = ssm_here(*args)
    assert code == 130
    statuses = sorted(r["status"] for r in records(out).values())
    assert statuses == ["interrupted"]  # the second run never started
    assert "1 not started, 1 interrupted" in err and "To finish: ssm run ablation=disc" in err
    monkeypatch.setattr(RecordKeeper, "on_train_epoch_end", real)
    assert ssm_here(*args)[0] == 0
    rs = assert_each_completed_once(out, 2, 2)
    assert sorted(r["attempts"] for r in rs.values()) == [1, 2]  # the interrupted one resumed


# ---- 6. SIGTERM mid-grid (from outside, as a batch system sends it) --------------------------------

def test_sigterm_mid_grid_exits_nonzero_naming_what_is_left_then_the_rerun_finishes(ssm_here, tmp_path):
    out = tmp_path / "runs"
    args = ["run", "ablation=disc", "seeds=[0]", *SMOKE, "trainer.epochs=6", f"out_dir={out}"]
    env = {**os.environ, "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "ssm_cli.cli.main", *args]
    p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and p.poll() is None:  # wait until the first run is in its epochs
        rs = [r for r in records(out).values()] if out.exists() else []
        if any(len(r.get("epochs") or []) >= 1 for r in rs):
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=120)
    assert "Traceback" not in stdout + stderr, stdout + stderr
    assert p.returncode == 143, (p.returncode, stderr)
    statuses = [r["status"] for r in records(out).values()]
    assert "interrupted" in statuses and "failed" not in statuses
    line = " ".join(stderr.split())
    assert "grid not complete:" in line and "interrupted" in line and "To finish: ssm run ablation=disc" in line
    assert ssm_here(*args)[0] == 0  # the rerun (here: no second start-up)
    assert_each_completed_once(out, 2, 6)


# ---- 3. every value checked before anything runs -----------------------------------------------------

@pytest.mark.parametrize("override, needle", [
    ("trainer.epochs=-1", "invalid value -1 for trainer.epochs; valid: an integer >= 1"),
    ("trainer.epochs=0", "for trainer.epochs"),
    ("trainer.limit_train_batches=0", "for trainer.limit_train_batches; valid: an integer >= 1 or a number in (0, 1]"),
    ("trainer.batch_size=0", "invalid value 0 for trainer.batch_size"),
    ("trainer.batch_size=-8", "invalid value -8 for trainer.batch_size"),
    ("optimizer.lr=abc", "invalid value 'abc' for optimizer.lr; valid: a number > 0"),
    ("optimizer.lr=-1", "invalid value -1 for optimizer.lr"),
    ("model.dropout=2", "invalid value 2 for model.dropout; valid: a number in [0, 1)"),
    ("model.dt_min=0", "invalid value 0 for model.dt_min"),
    ("model.channels=0", "invalid value 0 for model.channels"),
    ("seeds=[]", "invalid value [] for seeds; valid: a non-empty list"),
    ("seeds=[0,0]", "without repeats"),
    ("seeds=[-1]", "invalid value [-1] for seeds"),
    ("model.d_state=${oops}", "cannot resolve the value of model.d_state"),
    ("scheduler.warmup_steps=-1", "for scheduler.warmup_steps"),
])
def test_bad_values_are_named_with_their_range_before_anything_runs(ssm_here, tmp_path, override, needle):
    from ssm_cli.train.grid import plan

    with pytest.raises(UserError) as e:
        plan(["preset=smoke", f"out_dir={tmp_path}", override])
    assert needle in str(e.value)
    code, _, err = ssm_here("run", "preset=smoke", f"out_dir={tmp_path}", override, "--dry-run")
    assert code == 2 and needle.split(";")[0] in " ".join(err.split())
    assert not (tmp_path / "single").exists()


def test_every_key_outside_the_model_has_its_valid_values_declared():
    """Each key of the trainer, optimizer, schedulers and launchers (and seeds) is in config.VALID:
    a new key without a declared range fails here."""
    from omegaconf import OmegaConf

    from ssm_cli.config import CONF_DIR, VALID

    for group in ("trainer", "optimizer", "scheduler", "launcher"):
        for f in (CONF_DIR / group).glob("*.yaml"):
            for key in OmegaConf.load(f):
                if key == "defaults":  # Hydra's defaults list (a site launcher file builds on slurm), not a key
                    continue
                assert f"{group}.{key}" in VALID, f"{group}.{key} ({f.name}) has no declared valid values"
    assert "seeds" in VALID


# ---- 4. corrupt records ----------------------------------------------------------------------------

def _fake_record(out: Path, variant: str, seed: int, result: float) -> Path:
    d = out / "init" / "synthetic" / variant / f"seed{seed}-abcd0123"
    d.mkdir(parents=True)
    (d / "record.json").write_text(json.dumps({
        "status": "completed", "ablation": "init", "dataset": "synthetic", "preset": "smoke", "variant": variant,
        "variant_index": 0 if variant == "inv" else 1, "seed": seed, "metric": "test_acc", "result": result,
        "epochs": [{"epoch": 0, "val_acc": result}]}))
    return d / "record.json"


def test_unreadable_records_are_listed_and_their_groups_flagged(ssm_here, tmp_path):
    out = tmp_path / "runs"
    for seed in range(3):
        _fake_record(out, "inv", seed, 80.0 + seed)
        _fake_record(out, "lin", seed, 70.0 + seed)
    garbage = out / "init" / "synthetic" / "lin" / "seed1-abcd0123" / "record.json"
    garbage.write_text('{"status": "compl')  # half a record
    listed = out / "init" / "synthetic" / "lin" / "seed2-abcd0123" / "record.json"
    listed.write_text("[]")  # valid JSON, not a record
    code, stdout, err = ssm_here("table", str(out), "--format", "json")
    assert code == 0
    rows = {r["variant"]: r for r in json.loads(stdout)}
    assert (rows["inv"]["n"], rows["inv"]["flags"]) == (3, "")
    assert (rows["lin"]["n"], rows["lin"]["flags"]) == (1, "missing seeds 1, 2")
    err = " ".join(err.split())
    assert "2 unreadable record(s) left out" in err and f"{listed}: a JSON list, not a run record" in err
    assert f"{garbage}: not valid JSON" in err
    code, _, err = ssm_here("plot", str(out), "--out", str(tmp_path / "png"))
    assert code == 0 and "2 unreadable record(s)" in err


def test_an_unreadable_record_of_a_run_is_set_aside_and_the_run_finishes(ssm_here, tmp_path):
    out = tmp_path / "runs"
    args = ["run", *SMOKE, f"out_dir={out}", "seeds=[0]"]
    assert ssm_here(*args)[0] == 0
    [path] = out.rglob("record.json")
    path.write_text("[]")
    code, _, err = ssm_here(*args)
    assert code == 0 and "unreadable record" in err
    assert path.with_name("record.json.corrupt").read_text() == "[]"
    assert_each_completed_once(out, 1, 2)


# ---- 5. data errors name the file; a fixed file reruns its run -------------------------------------

def test_a_corrupt_wav_names_the_file_and_its_run_reruns_once_the_file_is_fixed(ssm_here, tmp_path):
    data = tmp_path / "data"
    write_speech_commands(data, n_per_word=3, length=1600)
    wav = next((data / "speech_commands" / "speech_commands_v0.02" / "yes").glob("*.wav"))
    good = wav.read_bytes()
    wav.write_bytes(good[:12] + np.random.default_rng(0).bytes(len(good) - 12))  # RIFF header, then garbage
    out = tmp_path / "runs"
    args = ["run", "dataset=sc35", *SMOKE[:1], "trainer.limit_train_batches=1", "trainer.limit_eval_batches=1",
            "trainer.epochs=1", f"data_dir={data}", "dataset.options.download=false", f"out_dir={out}", "seeds=[0]"]
    code, _, err = ssm_here(*args)
    assert code == 2 and f"corrupt WAV file {wav}" in " ".join(err.split())
    [r] = records(out).values()
    assert r["status"] == "failed" and r["data_file"]["path"] == str(wav)
    code, _, err = ssm_here(*args)  # unchanged: not retried, and the grid is not complete
    assert code == 1 and "1 failed" in err and str(wav) in " ".join(err.split())
    code, _, err = ssm_here("data", "verify", "sc35", "--data-dir", str(data))
    assert code == 2 and str(wav) in " ".join(err.split())
    wav.write_bytes(good)
    assert ssm_here(*args)[0] == 0
    assert_each_completed_once(out, 1, 1)


def test_a_truncated_cache_file_is_named_and_rebuilt(tmp_path, capfd):
    from ssm_cli.data import load_dataset

    data = tmp_path / "data"
    write_speech_commands(data, n_per_word=3, length=1600)
    first = load_dataset("sc35", data, download=False)
    x0 = first.train[0][0].clone()
    [audio] = (data / "speech_commands" / "speech_commands_v0.02" / ".ssm_cache").glob("speech-*/audio.npy")
    audio.write_bytes(audio.read_bytes()[:500])
    capfd.readouterr()
    again = load_dataset("sc35", data, download=False)
    err = " ".join(capfd.readouterr().err.split())
    assert f"damaged cache file {audio}" in err and "rebuilding" in err
    assert (again.train[0][0] == x0).all()


# ---- 7. unwritable paths ---------------------------------------------------------------------------

def test_impossible_output_paths_are_errors_before_any_work(ssm_here, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, _, err = ssm_here("run", *SMOKE, f"out_dir={a_file}/runs", "--dry-run")
    assert code == 2 and "is a file, not a folder" in err
    runs = tmp_path / "runs"
    _fake_record(runs, "inv", 0, 50.0)
    code, _, err = ssm_here("table", str(runs), "--out", str(a_file / "t.md"))
    assert code == 2 and "is a file, not a folder" in err
    code, _, err = ssm_here("table", str(runs), "--out", str(tmp_path))
    assert code == 2 and "is a folder; name a file" in err
    code, _, err = ssm_here("plot", str(runs), "--out", str(a_file / "png"))
    assert code == 2 and "is a file, not a folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_dir_is_an_error_before_any_work(ssm_here, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, _, err = ssm_here("run", *SMOKE, f"out_dir={ro}", "--dry-run")
        assert code == 2 and "is not writable" in err
    finally:
        ro.chmod(0o755)


# ---- 8. records readable by the group --------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_records_get_the_mode_of_any_new_file(tmp_path, umask, mode):
    from ssm_cli.train.record import write_json_atomic

    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "record.json", {"status": "pending"})
    finally:
        os.umask(old)
    assert (tmp_path / "record.json").stat().st_mode & 0o777 == mode


# ---- launcher=local: an interrupted grid stops its workers, which record their runs as interrupted ----

WORKER = """
import sys, time
from ssm_cli.errors import Interrupted
from ssm_cli.interrupts import exit_code, signals_raise
try:
    with signals_raise():
        print("ready", flush=True)
        time.sleep(120)
except Interrupted as e:
    sys.exit(exit_code(e.signum))
"""


def test_stop_workers_asks_each_worker_to_stop_and_kills_one_that_does_not():
    from ssm_cli.train.grid import stop_workers

    polite = subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE, text=True)
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                 "print('ready', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    assert polite.stdout.readline().strip() == stubborn.stdout.readline().strip() == "ready"
    t = time.monotonic()
    stop_workers([polite, stubborn], grace=3.0)
    assert polite.returncode == 143  # SIGTERM became Interrupted: the worker's runs are recorded as interrupted
    assert stubborn.returncode == -signal.SIGKILL and time.monotonic() - t < 30
