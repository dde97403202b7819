"""What a run's checkpoint carries besides Lightning's state, and the callback that writes it.

``last.ckpt`` (a pack's: in its folder, ``train/pack.py``) is written atomically after every
epoch, before the records, so a record never shows an epoch that a resume would compute again.
It holds the members' histories, diverged members, optimizer group counts (a pack's checkpoint can
be cut per member), training seconds, steps done, the kept best-epoch weights
(``train/best.py``) and the training loader's shuffling generator. Keys are ``ssm_*``; a
checkpoint of an earlier version (one ``ssm_history``, keys missing) still loads.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytorch_lightning as pl

from ssm_cli.train.ddp import is_rank_zero
from ssm_cli.train.record import write_json_atomic


class CheckpointState:
    """Mixin of ``SequenceTask``: its ``ssm_*`` checkpoint entries, saved and restored."""

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ssm_histories"] = self.histories
        checkpoint["ssm_diverged"] = self.diverged
        checkpoint["ssm_pack_groups"] = getattr(self, "group_counts", None)
        checkpoint["ssm_train_seconds"] = self.train_seconds
        checkpoint["ssm_steps_done"] = self.steps_done
        checkpoint["ssm_best_states"] = self.best_states

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "ssm_histories" in checkpoint:
            self.histories = [list(h) for h in checkpoint["ssm_histories"]]
        else:  # a single run's checkpoint of an earlier version
            self.histories = [list(checkpoint.get("ssm_history", []))]
        self.diverged = {int(k): int(v) for k, v in checkpoint.get("ssm_diverged", {}).items()}
        self.train_seconds = float(checkpoint.get("ssm_train_seconds", 0.0))
        self.steps_done = int(checkpoint.get("ssm_steps_done", 0))
        self.best_states = checkpoint.get("ssm_best_states") or [None] * self.K  # none with test_at=every

    def on_fit_start(self) -> None:
        # a checkpoint is restored before the model moves to its device: the kept weights follow it here
        self.best_states = [None if b is None else
                            {"epoch": b["epoch"], "state": {n: t.to(self.device) for n, t in b["state"].items()}}
                            for b in self.best_states]


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
