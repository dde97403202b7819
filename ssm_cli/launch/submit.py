"""``launcher=slurm`` and ``launcher=submitit_local``: the units of a grid (runs or packs) as submitit jobs.

Each job runs one unit through the worker's entry point (``ssm_cli.train.worker.main``, as
``launcher=local`` does), so a run computes and records exactly what it would locally: records and
checkpoints land in the run directories under ``out_dir`` (on a cluster, the shared filesystem),
and rerunning the command skips, resumes and reuses runs as with any launcher.

- ``slurm``: all units in one job array (``executor.batch()``), at most ``array_parallelism``
  running at once. A run over several GPUs (``trainer.devices=N``) is one job of N tasks, one per
  GPU; Lightning reads its ranks from SLURM.
- ``submitit_local``: the same jobs through submitit's local executor, ``array_parallelism`` at a
  time; a run over several devices is one task, whose worker Lightning starts once per rank.

Time limits and pre-emption: SLURM signals the job ``signal_delay_s`` before its end; submitit then
calls ``UnitJob.checkpoint``, which requeues the same unit and ends the run (recorded
``interrupted``; its ``last.ckpt`` holds its last finished epoch); the requeued job resumes from that
checkpoint. Each run directory gets ``job.json`` (launcher, job id, submitit folder) for
``ssm status``; a job's output is in submitit's log files (``<folder>/<job id>_0_log.out``).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ssm_cli.errors import Interrupted, UserError
from ssm_cli.train.record import CONFIG, read_record, write_json_atomic

JOB_FILE = "job.json"
CLUSTER = {"slurm": "slurm", "submitit_local": "local"}  # launcher.name -> submitit's executor
STOP_GRACE_S = 60  # a stopped worker's time to record its runs as interrupted


def _submitit():
    try:
        import submitit
    except ImportError as e:
        raise UserError("launcher=slurm and launcher=submitit_local need submitit: pip install 'ssm-cli[slurm]'") from e
    return submitit


def executor_parameters(cfg: DictConfig) -> dict:
    """The ``AutoExecutor.update_parameters`` arguments of a grid's jobs, from ``launcher.*`` and
    ``trainer.devices``."""
    L = cfg.launcher
    devices = int(cfg.trainer.devices)
    slurm = L.name == "slurm"
    if slurm and devices > 1 and int(L.gpus_per_job) != devices:
        raise UserError(f"trainer.devices={devices} needs launcher.gpus_per_job={devices} "
                        f"(one task per GPU); got launcher.gpus_per_job={L.gpus_per_job}")
    tasks = devices if slurm else 1
    params = {"name": f"ssm-{cfg.run.ablation}-{cfg.dataset.name}", "timeout_min": int(L.time_min),
              "gpus_per_node": int(L.gpus_per_job), "tasks_per_node": tasks, "nodes": 1,
              "cpus_per_task": max(1, int(L.cpus_per_job) // tasks)}
    if L.get("mem_gb_per_job"):
        params["mem_gb"] = int(L.mem_gb_per_job)
    if slurm:
        extra = OmegaConf.to_container(L.sbatch_extra, resolve=True) if L.get("sbatch_extra") else {}
        params.update(slurm_partition=L.get("partition"), slurm_account=L.get("account"), slurm_qos=L.get("qos"),
                      slurm_array_parallelism=int(L.array_parallelism), slurm_additional_parameters=extra or None,
                      slurm_setup=list(L.get("setup") or []) or None)
    return {k: v for k, v in params.items() if v is not None}


def sbatch_options(params: dict, n_jobs: int, folder: str) -> str:
    """The ``#SBATCH`` header submitit writes for ``n_jobs`` array tasks with ``params`` (its own
    function, without needing ``srun`` here)."""
    _submitit()
    from submitit.slurm.slurm import SlurmExecutor, _convert_mem, _make_sbatch_string

    equivalent = SlurmExecutor._equivalence_dict()
    native = {}
    for k, v in params.items():
        if k.startswith("slurm_"):
            native[k[len("slurm_"):]] = v
        elif k in equivalent:
            native[equivalent[k]] = _convert_mem(v) if k == "mem_gb" else v
    text = _make_sbatch_string(command="<python -m submitit.core._submit ...>", folder=folder, map_count=n_jobs, **native)
    return "\n".join(line for line in text.splitlines() if line.startswith("#SBATCH"))


def describe_submission(units: list, cfg: DictConfig) -> str:
    """What ``--dry-run`` prints for a submitit launcher: the jobs and their resources."""
    params = executor_parameters(cfg)
    folder = str(cfg.launcher.folder)
    lines = [f"launcher={cfg.launcher.name}: {len(units)} job(s) (submitit folder {folder})"]
    for i, unit in enumerate(units):
        lines.append(f"  job {i}: " + ", ".join(f"{r.variant} seed {r.seed}" for r in unit))
    lines.append("  resources per job: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    if cfg.launcher.name == "slurm" and units:
        lines.append(sbatch_options(params, len(units), folder))
    return "\n".join(lines)


class UnitJob:
    """The function a submitit job calls: run one unit in a worker process; on submitit's
    checkpoint signal, stop the worker and requeue the unit (it resumes from ``last.ckpt``)."""

    def __init__(self):
        self.worker: subprocess.Popen | None = None

    def __call__(self, run_dirs: list[str]) -> int:
        import os

        from ssm_cli.train import worker

        cfg = OmegaConf.load(Path(run_dirs[0]) / CONFIG)
        if int(cfg.trainer.devices) == 1 or int(os.environ.get("SLURM_NTASKS", "1")) > 1:
            # in this process (one per rank in a SLURM job of several tasks); submitit's own
            # signal (checkpoint and requeue) ends the run with SystemExit: recorded interrupted
            return worker.main([Path(d) for d in run_dirs], signals=(signal.SIGINT,))
        log = Path(run_dirs[0]) / "stdout.log"  # a worker, which Lightning starts once per rank
        with open(log, "a") as f:
            self.worker = subprocess.Popen([sys.executable, "-m", "ssm_cli.train.worker", *run_dirs],
                                           stdout=f, stderr=subprocess.STDOUT)
        try:
            return self.worker.wait()
        except BaseException:  # the job cancelled (SIGINT) or ended: the worker must not outlive it
            self.stop_worker()
            raise

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)  # the worker records its runs as interrupted
            try:
                self.worker.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.worker.kill()  # its runs resume from their last checkpoint all the same
                self.worker.wait()

    def checkpoint(self, run_dirs: list[str]):
        """submitit's hook before a time limit or pre-emption: stop, then requeue the same unit."""
        self.stop_worker()
        return _submitit().helpers.DelayedSubmission(UnitJob(), run_dirs)

    def __getstate__(self) -> dict:
        return {"worker": None}


def make_executor(cfg: DictConfig):
    submitit = _submitit()
    executor = submitit.AutoExecutor(folder=str(cfg.launcher.folder), cluster=CLUSTER[cfg.launcher.name])
    executor.update_parameters(**executor_parameters(cfg))
    return executor


def _note_job(unit: list, job, cfg: DictConfig) -> None:
    for r in unit:
        write_json_atomic(r.run_dir / JOB_FILE, {"launcher": cfg.launcher.name, "job_id": str(job.job_id),
                                                 "folder": str(cfg.launcher.folder), "submitted": time.time()})


def run_submitit(units: list, cfg: DictConfig, on_done, console) -> bool:
    """Submit the units as jobs; with ``launcher.wait`` follow them, calling ``on_done(run,
    record)`` as each ends, and return True; without it return False once they are submitted."""
    from ssm_cli.train.grid import prepare

    L = cfg.launcher
    executor = make_executor(cfg)
    if L.name == "slurm":
        busy = active_units(units)
        if busy:
            console.print(f"  {len(busy)} unit(s) still queued or running as SLURM jobs: not submitted again "
                          f"(`ssm status {cfg.out_dir}`)", highlight=False)
            units = [u for u in units if u not in busy]
    for unit in units:
        for r in unit:
            prepare(r)
    dirs = [[str(r.run_dir) for r in unit] for unit in units]
    pending = list(zip(units, dirs))
    active: list = []

    def submit_some() -> None:
        if L.name == "slurm":  # one job array; SLURM keeps array_parallelism of it running
            with executor.batch():
                jobs = [executor.submit(UnitJob(), d) for _, d in pending]
            started = list(zip(jobs, [u for u, _ in pending]))
            pending.clear()
        else:
            started = []
            while pending and len(active) + len(started) < int(L.array_parallelism):
                unit, d = pending.pop(0)
                started.append((executor.submit(UnitJob(), d), unit))
        for job, unit in started:
            _note_job(unit, job, cfg)
        active.extend(started)

    submit_some()
    ids = ", ".join(str(j.job_id) for j, _ in active[:5]) + (" ..." if len(active) > 5 else "")
    console.print(f"  submitted {len(active)} job(s) via submitit ({L.name}): {ids}", highlight=False)
    if not L.wait:
        console.print(f"  not waiting (launcher.wait=false): follow with `ssm status {cfg.out_dir}`", highlight=False)
        return False
    try:
        while active or pending:
            time.sleep(float(L.poll_s))
            for job, unit in list(active):
                if job.done():
                    active.remove((job, unit))
                    for r in unit:
                        on_done(r, read_record(r.run_dir) or {"status": "failed", "error": f"job {job.job_id}: {job.state}"})
            submit_some()
    except Interrupted:
        if L.name == "slurm":
            console.print(f"  the jobs stay on the cluster: `ssm status {cfg.out_dir}`; scancel to stop them",
                          highlight=False)
        else:
            for job, _ in active:
                job.cancel()
        raise
    return True


# SLURM job states of a job that has not ended: its runs are not submitted again
ACTIVE_STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING")


def slurm_state(job: dict | None) -> str | None:
    """SLURM's state of the job ``job.json`` names (sacct, through submitit), e.g. PENDING,
    RUNNING, COMPLETED; None for another launcher or when SLURM cannot say."""
    if not job or job.get("launcher") != "slurm":
        return None
    try:
        import submitit

        state = submitit.SlurmJob(folder=job["folder"], job_id=str(job["job_id"])).watcher.get_state(
            str(job["job_id"]), mode="force")
    except Exception:  # noqa: BLE001 - no sacct here, or a job SLURM has forgotten
        return None
    return None if state in ("UNKNOWN", "") else state.split()[0]


def active_units(units: list) -> list:
    """The units one of whose runs is in a SLURM job that has not ended (a rerun of the command
    while the first jobs still wait or run)."""
    return [u for u in units if any(slurm_state(read_job(r.run_dir)) in ACTIVE_STATES for r in u)]


def read_job(run_dir: Path) -> dict | None:
    path = Path(run_dir) / JOB_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
