"""``ssm status OUT_DIR``: where each run of the grids under ``OUT_DIR`` stands.

A run is ``done`` (completed), ``running`` (with where: host, process id, job id), ``queued`` (its
job is submitted, ``job.json``, and it has not started), ``not started``, ``interrupted``
(resumes on the next ``ssm run``), or ``failed``/``diverged`` (with the last lines of its job's log,
else of its record's traceback). For SLURM jobs the state comes from ``sacct``: a job that ended
before its run started shows as ``not started``, with the job's state. A run recorded running
whose process is gone (this host, no such process: killed) shows as ``interrupted``.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ssm_cli.launch.submit import ACTIVE_STATES, read_job, slurm_state
from ssm_cli.train.record import CONFIG, read_record

LOG_LINES = 8


@dataclass
class RunState:
    run_dir: Path
    ablation: str
    dataset: str
    variant: str
    seed: str
    state: str
    where: str
    log_tail: list[str]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _job_log(job: dict | None) -> Path | None:
    """The job's output file in submitit's folder (``<job id>_0_log.out``, arrays included)."""
    if not job:
        return None
    for name in (f"{job['job_id']}_0_log.err", f"{job['job_id']}_0_log.out"):
        path = Path(job["folder"]) / name
        if path.exists() and path.stat().st_size:
            return path
    return None


def _tail(path: Path | None, n: int = LOG_LINES) -> list[str]:
    if path is None:
        return []
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def run_state(run_dir: Path) -> RunState:
    record = read_record(run_dir) or {}
    job = read_job(run_dir)
    status = record.get("status", "new")
    parts = run_dir.relative_to(run_dir.parents[3]).parts  # ablation/dataset/variant/seedN-hash
    where, tail = "", []
    if status == "completed":
        state = "done"
    elif status == "running":
        w = record.get("where") or {}
        gone = w.get("host") == socket.gethostname() and isinstance(w.get("pid"), int) and not _alive(w["pid"])
        state = "interrupted" if gone else "running"
        where = ", ".join(f"{k} {w[k]}" for k in ("host", "pid", "job_id") if w.get(k))
        if gone:
            where += " (process gone)"
    elif status in ("failed", "diverged"):
        state = status
        where = str(record.get("error") or "")
        tail = _tail(_job_log(job)) or _tail(run_dir / "stdout.log") or (record.get("traceback") or "").splitlines()[-LOG_LINES:]
    elif status == "interrupted":
        state = "interrupted"
    elif job is not None:
        slurm = slurm_state(job)  # None: not SLURM, or SLURM cannot say
        state = "queued" if slurm is None or slurm in ACTIVE_STATES else "not started"
        where = f"job {job['job_id']} ({job['launcher']}{', ' + slurm if slurm else ''})"
    else:
        state = "not started"
    return RunState(run_dir, parts[0], parts[1], parts[2], parts[3].split("-")[0].removeprefix("seed"),
                    state, where, tail)


def grid_states(out_dir: Path) -> list[RunState]:
    """Every run directory under ``out_dir`` (``<ablation>/<dataset>/<variant>/seed<s>-<hash>``)."""
    dirs = sorted(p.parent for p in Path(out_dir).glob(f"*/*/*/seed*/{CONFIG}"))
    return [run_state(d) for d in dirs]
