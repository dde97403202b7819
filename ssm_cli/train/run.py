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
from ssm_cli.train.record import (CHECKPOINT, CONFIG, best_epoch, environment, file_state, read_record, run_lock,
                                  set_aside_corrupt_checkpoint, write_json_atomic)


def resolve_device(cfg: DictConfig) -> torch.device:
    acc = cfg.trainer.accelerator
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def deterministic_compilation(on: bool) -> bool | None:
    """Set Inductor's deterministic mode (``torch._inductor.config.deterministic``); returns the
    previous setting, None if this torch has no such setting.

    By default Inductor times several configurations of a reduction kernel and keeps the fastest;
    they sum in different orders, so two runs of one config can differ in the last bits, and after
    thousands of steps in the second decimal of an accuracy. Deterministic mode picks a
    configuration without timing. ``trainer.deterministic=true`` sets it while the run trains,
    beside Lightning's ``deterministic`` (torch's deterministic algorithms)."""
    import torch._inductor.config as inductor_config

    if not hasattr(inductor_config, "deterministic"):
        return None
    previous = bool(inductor_config.deterministic)
    inductor_config.deterministic = bool(on)
    return previous


def new_record(cfg: DictConfig, run_dir: Path) -> dict:
    r = cfg.run
    return {
        "status": "pending", "ablation": r.ablation, "dataset": cfg.dataset.name, "variant": r.variant,
        "variant_index": r.variant_index, "seed": r.seed, "overrides": list(r.overrides),
        "metric": r.metric, "paper": r.paper, "preset": cfg.preset.name, "config_hash": r.config_hash,
        "run_dir": str(run_dir), "epochs": [], "attempts": 0, "wall_seconds": 0.0,
    }


class RecordKeeper(pl.Callback):
    """After each epoch: append each member's metrics, write its record, checkpoint (atomically).

    ``records[k]`` / ``run_dirs[k]`` belong to member k (a single run is a pack of one); the
    checkpoint is the run's ``last.ckpt``, or the pack's. The checkpoint also holds the state of
    the training loader's shuffling generator (``state_dict``): a resumed run draws the batch
    orders of the later epochs, not the first epoch's order again."""

    def __init__(self, run_dirs: list[Path], records: list[dict], ckpt: Path, t0: float, wall0: float,
                 train_loader=None):
        self.run_dirs, self.records, self.ckpt, self.t0, self.wall0 = run_dirs, records, ckpt, t0, wall0
        self.shuffle = getattr(train_loader, "generator", None)  # torch.Generator (DataLoader, TensorBatches)

    def state_dict(self) -> dict:
        return {"shuffle_generator": self.shuffle.get_state()} if self.shuffle is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.shuffle is not None and "shuffle_generator" in state:
            self.shuffle.set_state(state["shuffle_generator"])

    def on_train_epoch_end(self, trainer, task) -> None:
        metrics = task.epoch_metrics()
        task.train_seconds += task._epoch_train_seconds
        wall = self.wall0 + time.perf_counter() - self.t0
        for k, record in enumerate(self.records):
            if k in task.diverged:  # a diverged member of a pack: its record says where, no more epochs
                record.update(status="diverged", diverged_step=task.diverged[k],
                              error=f"loss is not finite at step {task.diverged[k]}")
                continue
            task.histories[k].append(metrics[k])
            record["epochs"] = task.histories[k]
            record["wall_seconds"] = wall
        task.keep_best_states()  # before the checkpoint: a resumed run tests the same weights
        # checkpoint first: a record never shows an epoch that a resume would compute again
        tmp = self.ckpt.with_name(f".{self.ckpt.name}.tmp")
        trainer.save_checkpoint(tmp)  # every rank calls it; rank 0 writes
        if not is_rank_zero():
            return
        os.replace(tmp, self.ckpt)
        for run_dir, record in zip(self.run_dirs, self.records):
            write_json_atomic(run_dir / "record.json", record)


def run_test_pass(trainer: pl.Trainer, task, loaders: dict) -> float | None:
    """Evaluate the sets other than ``val`` once, each member with its weights of its best
    validation epoch, for the members whose best epoch has no test metrics (``trainer.test_at=best``);
    the metrics join that epoch's history entry. All members in one pass (a member with nothing to
    test computes along, unused). Returns the pass's seconds, None if there was nothing to test.

    ``trainer.validate`` runs it as it runs each epoch's evaluation (eval mode, no CUDA graphs,
    the same precision and ``limit_eval_batches``), so ``every`` and ``best`` agree to float rounding.
    The weights stay those of the best epochs afterwards; ``last.ckpt`` keeps the last epoch's.
    """
    from ssm_cli.trace import trace

    members = task.untested_members()
    if not members:
        return None
    t = time.perf_counter()
    task.load_best_states(members)
    task.evaluate_on(task.test_names)
    trainer.validate(task, dataloaders=[loaders[n] for n in task.test_names], verbose=False)
    metrics = task.eval_metrics()  # reads the sums: waits for the device
    for k in members:
        best_epoch(task.histories[k], task.spec.task).update(metrics[k])
    trace(f"test pass at the best epochs done ({len(members)} run(s))")
    return time.perf_counter() - t


def execute(run_dir: Path, progress: bool | None = None) -> dict:
    """Run (or resume, or skip) the run in ``run_dir``; returns its record.

    Returns ``{"status": "locked"}`` if another process is running it right now.
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
            return {"status": "locked", "run_dir": str(run_dir)}
        record = read_record(run_dir) or new_record(cfg, run_dir)
        if record["status"] == "completed":
            return record
        return _fit([cfg], [run_dir], [record], run_dir / CHECKPOINT, progress)[0]


def execute_pack(run_dirs: list[Path], progress: bool | None = None) -> list[dict]:
    """Train the runs in ``run_dirs`` as one pack (``ssm_cli.layers.packed``); their records.

    The pack's checkpoint lives in ``<out_dir>/packs/<id>/`` (``pack.json`` names the members);
    every member's record is its own and says ``pack``. Run directories must be prepared and not
    completed; the grid planner (``grid.make_units``) forms packs only of such runs.
    """
    from contextlib import ExitStack

    from ssm_cli.train.pack import pack_dir, write_pack

    run_dirs = [Path(d) for d in run_dirs]
    if len(run_dirs) == 1:
        return [execute(run_dirs[0], progress)]
    cfgs = [OmegaConf.load(d / CONFIG) for d in run_dirs]
    with ExitStack() as stack:
        if not all([stack.enter_context(run_lock(d)) for d in run_dirs]):
            return [{"status": "locked", "run_dir": str(d)} for d in run_dirs]
        records = [read_record(d) or new_record(c, d) for c, d in zip(cfgs, run_dirs)]
        done = [str(d) for d, r in zip(run_dirs, records) if r["status"] == "completed" or (d / CHECKPOINT).exists()]
        if done:
            raise RuntimeError(f"runs already completed or with a checkpoint of their own cannot join a pack: {done}")
        pdir = pack_dir(cfgs[0].out_dir, run_dirs)
        write_pack(pdir, run_dirs)
        for k, r in enumerate(records):
            r["pack"] = {"dir": str(pdir), "index": k, "members": [str(d) for d in run_dirs]}
        return _fit(cfgs, run_dirs, records, pdir / CHECKPOINT, progress)


def _fit(cfgs: list[DictConfig], run_dirs: list[Path], records: list[dict], ckpt: Path,
         progress: bool | None) -> list[dict]:
    from ssm_cli.data import load_dataset
    from ssm_cli.layers import describe_groups, param_groups
    from ssm_cli.train.loaders import ON_DEVICE_LIMIT_BYTES, dataset_nbytes, make_loader
    from ssm_cli.trace import trace
    from ssm_cli.train.task import Diverged, SequenceTask

    cfg = cfgs[0]  # a pack's members share everything but their SSM cores
    t0 = time.perf_counter()
    trace("fit starts")
    wall0 = max(float(r.get("wall_seconds") or 0.0) for r in records)
    # configs written before trainer.test_at existed: every set every epoch, as those runs began
    test_at = cfg.trainer.get("test_at", "every")
    env = environment()  # once per fit: a git subprocess and the device's name, not one per member
    zero = is_rank_zero()
    corrupt = set_aside_corrupt_checkpoint(ckpt) if zero else None
    ddp = int(cfg.trainer.devices) > 1
    if ddp:  # every rank computes its share of each batch (train/ddp.py); no CUDA graphs there
        notes = ddp_notes(cfg)
        cfgs = [c.copy() for c in cfgs]
        for c in cfgs:
            c.trainer.cuda_graphs = False
        cfg = cfgs[0]
    for r in records:
        r.update(status="running", attempts=r.get("attempts", 0) + 1, environment=dict(env),
                 error=None, diverged_step=None, test_at=test_at, data_file=None, traceback=None,
                 where=where())
        if ddp:
            r["ddp"] = notes
        if corrupt:  # starts again from scratch: what the record showed of the lost epochs goes
            r.update(epochs=[], best=None, best_epoch=None, result=None, restarted=corrupt)
    for d, r in zip(run_dirs, records):
        if zero:
            write_json_atomic(d / "record.json", r)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    device = task = None
    tc = cfg.trainer
    inductor_before = deterministic_compilation(True) if tc.deterministic else None
    try:
        seed = int(cfg.run.seed)
        pl.seed_everything(seed, workers=True, verbose=False)
        torch.set_float32_matmul_precision(tc.matmul_precision)
        data = load_dataset(cfg.dataset.name, cfg.data_dir, **OmegaConf.to_container(cfg.dataset.options, resolve=True))
        device = resolve_device(cfg)
        on_device = tc.data_on_device
        if on_device == "auto":
            on_device = device.type == "cuda" and dataset_nbytes(data.train) < ON_DEVICE_LIMIT_BYTES
        dev = device if on_device else None
        eval_bs = tc.eval_batch_size or tc.batch_size
        train = make_loader(data.train, tc.batch_size, True, dev, tc.num_workers, seed)
        evals = {"val": (data.val, 1.0), "test": (data.test, 1.0), **data.extra_eval}
        eval_loaders = {name: make_loader(ds, eval_bs, False, dev, tc.num_workers) for name, (ds, _) in evals.items()}
        if ddp:
            train, eval_loaders = RankShard(train, True), {n: RankShard(lo, False) for n, lo in eval_loaders.items()}
        limit = tc.limit_train_batches
        steps = min(len(train), limit) if isinstance(limit, int) else len(train)
        task = SequenceTask(cfgs, data.spec, list(evals), [rate for _, rate in evals.values()], steps, seed=seed)
        task.evaluate_on(list(evals) if test_at == "every" else ["val"])  # each epoch's evaluation
        trace(f"model{'s' if len(cfgs) > 1 else ''} built")
        for member, r in zip(task.members, records):
            groups = param_groups(member, lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay,
                                  bias_norm_weight_decay=bool(cfg.optimizer.get("bias_norm_weight_decay", True)))
            r.update(n_params=sum(p.numel() for p in member.parameters()), optimizer_groups=describe_groups(groups),
                     spec=vars(data.spec) if hasattr(data.spec, "__dict__") else None,
                     n_train=len(data.train), n_val=len(data.val), n_test=len(data.test))
        show = tc.progress if progress is None else progress
        callbacks = [RecordKeeper(run_dirs, records, ckpt, t0, wall0, train)]
        if show:
            callbacks.append(pl.callbacks.RichProgressBar(leave=False))
        trainer = pl.Trainer(
            max_epochs=tc.epochs, accelerator="gpu" if device.type == "cuda" else "cpu", devices=tc.devices,
            precision=tc.precision, gradient_clip_val=tc.grad_clip or None, logger=False,
            enable_checkpointing=False, enable_progress_bar=bool(show), enable_model_summary=False,
            num_sanity_val_steps=0, callbacks=callbacks, default_root_dir=str(run_dirs[0]),
            limit_train_batches=limit, limit_val_batches=tc.limit_eval_batches, deterministic=tc.deterministic,
            strategy="ddp" if ddp else "auto", use_distributed_sampler=False,  # RankShard cuts the batches
        )
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
        for k, r in enumerate(records):
            if k in task.diverged:
                r.update(status="diverged", diverged_step=task.diverged[k], error=f"loss is not finite at step {task.diverged[k]}")
                continue
            history = task.histories[k]
            best = best_epoch(history, data.spec.task)
            total_train = sum(m.get("train_seconds", 0.0) for m in history)
            samples = sum(m.get("train_samples_per_s", 0.0) * m.get("train_seconds", 0.0) for m in history)
            r.update(status="completed", epochs=history, best_epoch=best["epoch"] if best else None,
                     best=best, result=best.get(r["metric"]) if best else None, test_seconds=test_seconds,
                     samples_per_s=samples / total_train if total_train else None, peak_gpu_memory_mb=peak)
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
        if inductor_before is not None:
            deterministic_compilation(inductor_before)
        for d, r in zip(run_dirs, records):
            r["wall_seconds"] = wall0 + time.perf_counter() - t0
            if is_rank_zero():
                write_json_atomic(d / "record.json", r)
    return records


def where() -> dict:
    """Where the run is running, for ``ssm status``: host, process id, and the job's id under
    submitit (SLURM's array job and task ids, or the local executor's)."""
    import socket

    e = os.environ
    job = (f"{e['SLURM_ARRAY_JOB_ID']}_{e['SLURM_ARRAY_TASK_ID']}" if "SLURM_ARRAY_JOB_ID" in e
           else e.get("SLURM_JOB_ID") or e.get("SUBMITIT_LOCAL_JOB_ID"))
    return {"host": socket.gethostname(), "pid": os.getpid(), "job_id": job}
