"""One run, end to end: seed → data → model → trainer → fit → test pass → record; or a pack of runs at once.

A run lives in its own directory holding ``config.yaml`` (resolved, written before it starts),
``last.ckpt`` (after every epoch, written atomically) and ``record.json``. Executing a run whose
checkpoint exists resumes it; executing a completed run does nothing. A pack (``execute_pack``)
trains several runs in lockstep as one wide network; its checkpoint lives in the pack's folder,
each member's record in its own run directory (``ssm_cli/train/pack.py``).
"""
from __future__ import annotations

import logging
import os
import time
import traceback
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from ssm_cli.errors import DataFileError, Interrupted, UserError
from ssm_cli.train.ddp import RankShard, ddp_notes, is_rank_zero
from ssm_cli.train.device import resolve_device, torch_flags
from ssm_cli.train.record import (CHECKPOINT, CONFIG, best_epoch, environment, file_state, locked_record, read_record,
                                  run_lock, set_aside_corrupt_checkpoint, write_json_atomic)


def new_record(cfg: DictConfig, run_dir: Path) -> dict:
    r = cfg.run
    return {
        "status": "pending", "ablation": r.ablation, "dataset": cfg.dataset.name, "variant": r.variant,
        "variant_index": r.variant_index, "seed": r.seed, "overrides": list(r.overrides),
        "metric": r.metric, "paper": r.paper, "preset": cfg.preset.name, "config_hash": r.config_hash,
        "run_dir": str(run_dir), "epochs": [], "attempts": 0, "wall_seconds": 0.0,
    }


def execute(run_dir: Path, progress: bool | None = None) -> dict:
    """Run (or resume, or skip) the run in ``run_dir``; returns its record.

    Returns ``{"status": "locked", "holder": {"host", "pid"}}`` if another process is running it
    right now (``record.locked_record``).
    """
    run_dir = Path(run_dir)
    cfg = OmegaConf.load(run_dir / CONFIG)
    if not is_rank_zero():  # a DDP rank > 0: rank 0 holds the lock and keeps the record
        record = read_record(run_dir) or new_record(cfg, run_dir)
        if record["status"] == "completed":  # as rank 0 finds it (all ranks start at once under SLURM)
            return record
        return _fit([cfg], [run_dir], [record], run_dir / CHECKPOINT, False)[0]
    with run_lock(run_dir) as acquired:
        if not acquired:
            return locked_record(run_dir)
        record = read_record(run_dir) or new_record(cfg, run_dir)
        if record["status"] == "completed":
            return record
        return _fit([cfg], [run_dir], [record], run_dir / CHECKPOINT, progress)[0]


def execute_pack(run_dirs: list[Path], progress: bool | None = None) -> list[dict]:
    """Train the runs in ``run_dirs`` as one pack (``ssm_cli.layers.packed``); their records.

    The pack's checkpoint lives in ``<out_dir>/packs/<id>/`` (``pack.json`` names the members);
    every member's record is its own and says ``pack``. Run directories must be prepared and not
    completed; the grid planner (``pack.make_units``) forms packs only of such runs.
    """
    from contextlib import ExitStack

    from ssm_cli.train.pack import pack_dir, write_pack

    run_dirs = [Path(d) for d in run_dirs]
    if len(run_dirs) == 1:
        return [execute(run_dirs[0], progress)]
    cfgs = [OmegaConf.load(d / CONFIG) for d in run_dirs]
    with ExitStack() as stack:
        held = [stack.enter_context(run_lock(d)) for d in run_dirs]
        records = [read_record(d) or new_record(c, d) for c, d in zip(cfgs, run_dirs)]
        if all(held) and not any(r["status"] == "completed" for r in records):
            done = [str(d) for d in run_dirs if (d / CHECKPOINT).exists()]
            if done:
                raise RuntimeError(f"runs with a checkpoint of their own cannot join a pack: {done}")
            pdir = pack_dir(cfgs[0].out_dir, run_dirs)
            write_pack(pdir, run_dirs)
            for k, r in enumerate(records):
                r["pack"] = {"dir": str(pdir), "index": k, "members": [str(d) for d in run_dirs]}
            return _fit(cfgs, run_dirs, records, pdir / CHECKPOINT, progress)
    # members that another process holds, or completed since the grid was planned, are reported
    # as they are; the others train as a smaller pack
    settled = {d: (r if h else locked_record(d)) for d, h, r in zip(run_dirs, held, records)
               if not h or r["status"] == "completed"}
    rest = [d for d in run_dirs if d not in settled]
    trained = dict(zip(rest, execute_pack(rest, progress))) if rest else {}
    return [settled[d] if d in settled else trained[d] for d in run_dirs]


def _fit(cfgs: list[DictConfig], run_dirs: list[Path], records: list[dict], ckpt: Path,
         progress: bool | None) -> list[dict]:
    """Train a run or a pack (``cfgs`` share everything but their SSM cores) and test it; each
    member's record is written when it starts, after every epoch and at the end."""
    from ssm_cli.data import load_dataset
    from ssm_cli.trace import trace
    from ssm_cli.train.best import run_test_pass
    from ssm_cli.train.checkpoint import RecordKeeper
    from ssm_cli.train.loggers import RunLogs
    from ssm_cli.train.metrics import Diverged
    from ssm_cli.train.progress import ProgressFile

    cfg = cfgs[0]
    t0 = time.perf_counter()
    trace("fit starts")
    wall0 = max(float(r.get("wall_seconds") or 0.0) for r in records)
    # configs written before trainer.test_at existed: every set every epoch, as those runs began
    test_at = cfg.trainer.get("test_at", "every")
    ddp = int(cfg.trainer.devices) > 1
    if ddp:  # every rank computes its share of each batch (train/ddp.py); no CUDA graphs there
        cfgs = [c.copy() for c in cfgs]
        for c in cfgs:
            c.trainer.cuda_graphs = False
        cfg = cfgs[0]
    _start_records(run_dirs, records, ckpt, test_at, ddp_notes(cfg) if ddp else None)
    _quiet_lightning()
    device = task = None
    logs = RunLogs(cfgs, run_dirs, records)  # trainer.logger: each member's own logs (train/loggers.py)
    try:
        with torch_flags(cfg):
            seed = int(cfg.run.seed)
            pl.seed_everything(seed, workers=True, verbose=False)
            data = load_dataset(cfg.dataset.name, cfg.data_dir,
                                **OmegaConf.to_container(cfg.dataset.options, resolve=True))
            device = resolve_device(cfg)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()  # this fit's peak, not an earlier unit's in this process
            train, eval_loaders = _loaders(cfg, data, device, seed)
            if ddp:
                train = RankShard(train, True)
                eval_loaders = {n: RankShard(lo, False) for n, lo in eval_loaders.items()}
            task = _task(cfgs, data, train, eval_loaders, test_at, seed, records)
            keepers = [RecordKeeper(run_dirs, records, ckpt, t0, wall0, train)]
            if is_rank_zero():  # under DDP, rank 0 alone writes the logs and the progress file
                keepers += [logs, ProgressFile(run_dirs)]
            trainer = _trainer(cfg, device, keepers, progress, run_dirs[0])
            for r in records:  # data, model, loaders: what a run spends before its first step
                r["setup_seconds"] = time.perf_counter() - t0
            trace(f"setup done ({len(records)} run(s))")
            trainer.fit(task, train_dataloaders=train, val_dataloaders=[eval_loaders[n] for n in task.loop_names],
                        ckpt_path=str(ckpt) if ckpt.exists() else None,
                        weights_only=False)  # our own checkpoint: it holds the scheduler's state objects
            task.check_finite()
            # also after a resume whose epochs were all done (fit returns at once): the pass has not run
            test_seconds = run_test_pass(trainer, task, eval_loaders)
            peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
            _complete_records(records, task, test_seconds, peak)
    except Diverged as e:  # every member diverged
        diverged = task.diverged if task is not None else {}
        for k, r in enumerate(records):
            step = diverged.get(k, e.step)
            r.update(status="diverged", diverged_step=step, error=f"loss is not finite at step {step}")
    except DataFileError as e:  # a corrupt data file: failed, retried once the file changes (grid.todo)
        for r in records:
            r.update(status="failed", error=str(e), data_file=file_state(e.path))
        raise
    except UserError:  # bad input (e.g. data missing): not the run's fault, so it stays pending
        for r in records:
            r.update(status="pending")
        raise
    except (Interrupted, KeyboardInterrupt, SystemExit):  # SIGINT/SIGTERM: resumable, never failed
        for r in records:
            r.update(status="interrupted", error=None)
        raise
    except Exception as e:  # the grid goes on; the record keeps the traceback
        for r in records:
            r.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    finally:
        # every record, also of a failed (e.g. out-of-memory) fit: null on the CPU
        peak = torch.cuda.max_memory_allocated() / 2**20 if device is not None and device.type == "cuda" else None
        for d, r in zip(run_dirs, records):
            r["peak_gpu_memory_mb"] = peak
            r["wall_seconds"] = wall0 + time.perf_counter() - t0
            if is_rank_zero():
                write_json_atomic(d / "record.json", r)
        logs.close()
    return records


def where() -> dict:
    """Where the run is running, for ``ssm status``: host, process id, and the job's id under
    submitit (SLURM's array job and task ids, or the local executor's)."""
    import socket

    e = os.environ
    job = (f"{e['SLURM_ARRAY_JOB_ID']}_{e['SLURM_ARRAY_TASK_ID']}" if "SLURM_ARRAY_JOB_ID" in e
           else e.get("SLURM_JOB_ID") or e.get("SUBMITIT_LOCAL_JOB_ID"))
    return {"host": socket.gethostname(), "pid": os.getpid(), "job_id": job}


def _start_records(run_dirs: list[Path], records: list[dict], ckpt: Path, test_at: str,
                   ddp: list[str] | None = None) -> None:
    """Mark the records running (a new attempt) and write them (rank 0 only, under DDP, with
    ``ddp``'s notes); an unreadable checkpoint is set aside and the records lose what they showed
    of its epochs."""
    env = environment()  # once per fit: a git subprocess and the device's name, not one per member
    zero = is_rank_zero()
    corrupt = set_aside_corrupt_checkpoint(ckpt) if zero else None
    for r in records:
        r.update(status="running", attempts=r.get("attempts", 0) + 1, environment=dict(env),
                 error=None, diverged_step=None, test_at=test_at, data_file=None, traceback=None,
                 where=where())
        if ddp:
            r["ddp"] = ddp
        if corrupt:  # starts again from scratch: what the record showed of the lost epochs goes
            r.update(epochs=[], best=None, best_epoch=None, result=None, restarted=corrupt)
    for d, r in zip(run_dirs, records):
        if zero:
            write_json_atomic(d / "record.json", r)


def _quiet_lightning() -> None:
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def _loaders(cfg: DictConfig, data, device: torch.device, seed: int) -> tuple:
    """The training loader and the evaluation loaders by set name (``val``, ``test``, extra views);
    with ``trainer.data_on_device`` (auto: on a GPU, datasets under the limit) batched on the device."""
    from ssm_cli.train.loaders import ON_DEVICE_LIMIT_BYTES, dataset_nbytes, make_loader

    tc = cfg.trainer
    on_device = tc.data_on_device
    if on_device == "auto":
        on_device = device.type == "cuda" and dataset_nbytes(data.train) < ON_DEVICE_LIMIT_BYTES
    dev = device if on_device else None
    eval_bs = tc.eval_batch_size or tc.batch_size
    train = make_loader(data.train, tc.batch_size, True, dev, tc.num_workers, seed)
    evals = _eval_sets(cfg, data)
    return train, {name: make_loader(ds, eval_bs, False, dev, tc.num_workers) for name, (ds, _) in evals.items()}


def _eval_sets(cfg: DictConfig, data) -> dict:
    """Set name -> (dataset, the model's rate on it); the noisy views (``noise_eval_views``) are
    the test set."""
    noisy = {name: (data.test, 1.0) for name in noise_eval_views(cfg)}
    return {"val": (data.val, 1.0), "test": (data.test, 1.0), **data.extra_eval, **noisy}


def noise_eval_views(cfg) -> dict[str, tuple[float, float]]:
    """The noisy test views of an ablation with ``noise_amplitude`` (conf/ablation/ptd.yaml):
    ``test_noise`` at ``noise_omega`` and ``test_noise<omega>`` for each of ``noise_omegas``,
    each ``name -> (amplitude, omega)`` (docs/ptd-s5.md, "Fourier-mode noise")."""
    ab = cfg.get("ablation")
    if ab is None or not ab.get("noise_amplitude"):
        return {}
    amp = float(ab.noise_amplitude)
    views = {"test_noise": (amp, float(ab.noise_omega))}
    for w in ab.get("noise_omegas") or []:
        views[f"test_noise{float(w):g}"] = (amp, float(w))
    return views


def _task(cfgs: list[DictConfig], data, train, eval_loaders: dict, test_at: str, seed: int, records: list[dict]):
    """The Lightning module of the run or pack; each record gets its member's size and groups."""
    from ssm_cli.layers import describe_groups, param_groups
    from ssm_cli.trace import trace
    from ssm_cli.train.task import SequenceTask

    cfg = cfgs[0]
    evals = _eval_sets(cfg, data)
    limit = cfg.trainer.limit_train_batches
    steps = min(len(train), limit) if isinstance(limit, int) else len(train)
    task = SequenceTask(cfgs, data.spec, list(evals), [rate for _, rate in evals.values()], steps, seed=seed)
    task.eval_noise = noise_eval_views(cfg)  # name -> (amplitude, omega): the test set with input noise
    task.evaluate_on(list(evals) if test_at == "every" else ["val"])  # each epoch's evaluation
    trace(f"model{'s' if len(cfgs) > 1 else ''} built")
    o = cfg.optimizer
    for member, r in zip(task.members, records):
        groups = param_groups(member, lr=o.lr, weight_decay=o.weight_decay,
                              bias_norm_weight_decay=bool(o.get("bias_norm_weight_decay", True)))
        r.update(n_params=sum(p.numel() for p in member.parameters()), optimizer_groups=describe_groups(groups),
                 spec=vars(data.spec) if hasattr(data.spec, "__dict__") else None,
                 n_train=len(data.train), n_val=len(data.val), n_test=len(data.test))
    return task


def _trainer(cfg: DictConfig, device: torch.device, keepers: list[pl.Callback], progress: bool | None,
             root: Path) -> pl.Trainer:
    tc = cfg.trainer
    show = tc.progress if progress is None else progress
    callbacks = list(keepers) + ([pl.callbacks.RichProgressBar(leave=False)] if show else [])
    return pl.Trainer(
        max_epochs=tc.epochs, accelerator="gpu" if device.type == "cuda" else "cpu", devices=tc.devices,
        precision=tc.precision, gradient_clip_val=tc.grad_clip or None, logger=False,
        enable_checkpointing=False, enable_progress_bar=bool(show), enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=callbacks, default_root_dir=str(root),
        limit_train_batches=tc.limit_train_batches, limit_val_batches=tc.limit_eval_batches,
        deterministic=tc.deterministic,
        strategy="ddp" if int(tc.devices) > 1 else "auto", use_distributed_sampler=False,  # RankShard cuts the batches
    )


def _complete_records(records: list[dict], task, test_seconds: float | None, peak_mb: float | None) -> None:
    """Each member's final record: completed with its best epoch and result, or diverged."""
    for k, r in enumerate(records):
        if k in task.diverged:
            r.update(status="diverged", diverged_step=task.diverged[k], error=f"loss is not finite at step {task.diverged[k]}")
            continue
        history = task.histories[k]
        best = best_epoch(history, task.spec.task)
        total_train = sum(m.get("train_seconds", 0.0) for m in history)
        samples = sum(m.get("train_samples_per_s", 0.0) * m.get("train_seconds", 0.0) for m in history)
        r.update(status="completed", epochs=history, best_epoch=best["epoch"] if best else None,
                 best=best, result=best.get(r["metric"]) if best else None, test_seconds=test_seconds,
                 samples_per_s=samples / total_train if total_train else None, peak_gpu_memory_mb=peak_mb)
