"""Logs a researcher can open: CSV, TensorBoard or W&B (``trainer.logger``), one per run.

Each run (each member of a pack too) writes its own logs into ``<run_dir>/logs/``:

- every ``trainer.log_every_n_steps`` optimizer steps: ``train_loss_step`` and ``train_acc_step``
  (the means over the steps since the previous row, from the task's running sums: no extra work
  per step; on a GPU the rows are read from the device at most every ``FLUSH_SECONDS`` and at
  each epoch's end, so logging adds no per-step sync) and ``lr``;
- after every epoch: that epoch's entry of the record (``train_loss``, ``val_acc``, ...), and at
  the end the test metrics of the best epoch (``trainer.test_at=best`` adds them after training).

``csv``: ``logs/steps.csv`` and ``logs/epochs.csv`` (the record's ``epochs`` as a table).
``tensorboard``: event files in ``logs/tensorboard/``. ``wandb``: one W&B run per run, grouped by
``<ablation>/<dataset>``, named ``<variant>/seed<seed>``, in project ``trainer.wandb_project``;
its id is kept in ``logs/wandb_id`` so a resumed run continues the same W&B run. ``WANDB_MODE=offline``
works as W&B documents it (``wandb sync`` uploads later). Every step axis is the optimizer step;
a resumed run first drops what it logged after its last checkpoint (it computes those steps again).

TensorBoard and W&B are optional (``pip install 'ssm-cli[tensorboard]'`` / ``[wandb]``): they are
imported only when chosen, and a missing one is a UserError saying what to install.
"""
from __future__ import annotations

import csv
import os
import secrets
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from ssm_cli.errors import UserError

LOGGERS = ("none", "csv", "tensorboard", "wandb")
LOGS = "logs"  # the folder of a run's logs, inside its run directory
WANDB_ID = "wandb_id"
FLUSH_SECONDS = 10.0  # on a GPU: how often the pending train-loss rows are read from the device


def require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"trainer.logger={extra} needs the {extra} package: pip install 'ssm-cli[{extra}]' "
                        f"(or choose trainer.logger=csv|none)") from None


class CsvLog:
    """``steps.csv`` (appended) and ``epochs.csv`` (rewritten from the record's epochs)."""

    def __init__(self, logs: Path, resume_step: int):
        self.steps, self.epochs = logs / "steps.csv", logs / "epochs.csv"
        self.columns: list[str] | None = None
        if self.steps.exists():  # keep the rows up to the checkpoint the run resumes from
            with open(self.steps, newline="") as f:
                rows = list(csv.DictReader(f))
            self.columns = list(rows[0].keys()) if rows else None
            kept = [r for r in rows if int(r["step"]) <= resume_step]
            self._write(self.steps, kept, self.columns or ["step"])

    @staticmethod
    def _write(path: Path, rows: list[dict], columns: list[str]) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)

    def log_step(self, step: int, metrics: dict) -> None:
        row = {"step": step, **metrics}
        if self.columns is None or not self.steps.exists():
            self.columns = list(row)
            self._write(self.steps, [], self.columns)
        with open(self.steps, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore").writerow(row)

    def log_epochs(self, epochs: list[dict], final: bool = False) -> None:
        columns: list[str] = []
        for e in epochs:
            columns += [k for k in e if k not in columns]
        self._write(self.epochs, epochs, columns)

    def close(self) -> None:
        pass


class TensorBoardLog:
    """Scalars at the optimizer step in ``logs/tensorboard/`` (``torch.utils.tensorboard``)."""

    def __init__(self, logs: Path, resume_step: int):
        require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: a resumed run drops the events after its checkpoint, which it logs again
        # (a run started again from scratch, at step 0, all of them)
        self.writer = SummaryWriter(str(logs / "tensorboard"), purge_step=resume_step + 1)
        self.resume_step, self.logged_epochs = resume_step, None

    def log_step(self, step: int, metrics: dict) -> None:
        for k, v in metrics.items():
            if k != "epoch" and isinstance(v, (int, float)):
                self.writer.add_scalar(k, v, step)

    def log_epochs(self, epochs: list[dict], final: bool = False) -> None:
        if self.logged_epochs is None:
            self.logged_epochs = logged_before(epochs, self.resume_step)
        for e in epochs[self.logged_epochs:]:
            write_epoch(self.writer, e)
        self.logged_epochs = len(epochs)
        if final:  # the test metrics join the best epoch's entry after training (test_at=best)
            for e in epochs:
                for k, v in e.items():
                    if k.startswith("test") and isinstance(v, (int, float)):
                        self.writer.add_scalar(k, v, int(e["step"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def logged_before(epochs: list[dict], resume_step: int) -> int:
    """How many epochs a resumed run logged before its checkpoint (those up to ``resume_step``)."""
    return sum(int(e.get("step", 0)) <= resume_step for e in epochs) if resume_step else 0


def write_epoch(writer, entry: dict) -> None:
    """One epoch's entry of a record as scalars at its step (``epoch`` itself too)."""
    step = int(entry.get("step", entry.get("epoch", 0)))
    for k, v in entry.items():
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
            writer.add_scalar(k, v, step)


class WandbLog:
    """One W&B run per ssm run; its id in ``logs/wandb_id`` (resumed with the run). W&B's steps
    only go forward: the steps a resumed run computes again (after its checkpoint) and had logged
    before the interruption keep their first values; ``logs/wandb_step``, the last step logged,
    skips them here instead of W&B warning about each."""

    def __init__(self, logs: Path, resume_step: int, cfg: DictConfig):
        wandb = require("wandb", "wandb")
        id_file = logs / WANDB_ID
        run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(8)  # W&B ids: [a-z0-9]
        id_file.write_text(run_id + "\n")
        r = cfg.run
        self.run = wandb.init(project=cfg.trainer.get("wandb_project", "ssm"), group=f"{r.ablation}/{cfg.dataset.name}",
                              name=f"{r.variant}/seed{r.seed}", id=run_id, resume="allow", dir=str(logs),
                              config=OmegaConf.to_container(cfg, resolve=True), reinit="create_new")
        self.resume_step = resume_step
        self.logged_epochs = None
        self.step_file = logs / "wandb_step"
        self.last_step = int(self.step_file.read_text()) if self.step_file.exists() else 0

    def log_step(self, step: int, metrics: dict) -> None:
        if step > self.last_step or (step == self.last_step and not step):
            self.run.log(metrics, step=step)
            self.last_step = step

    def log_epochs(self, epochs: list[dict], final: bool = False) -> None:
        if self.logged_epochs is None:
            self.logged_epochs = logged_before(epochs, self.resume_step)
        for e in epochs[self.logged_epochs:]:
            if int(e["step"]) >= self.last_step:  # an epoch's entry shares its last step's row
                self.run.log({k: v for k, v in e.items() if k != "step"}, step=int(e["step"]))
                self.last_step = int(e["step"])
        self.logged_epochs = len(epochs)
        self.step_file.write_text(f"{self.last_step}\n")
        if final:  # W&B steps only go forward: the best epoch's test metrics go into the summary
            for e in epochs:
                self.run.summary.update({k: v for k, v in e.items() if k.startswith("test")})

    def close(self) -> None:
        self.step_file.write_text(f"{self.last_step}\n")
        self.run.finish()


def open_log(name: str, run_dir: Path, resume_step: int, cfg: DictConfig):
    logs = Path(run_dir) / LOGS
    logs.mkdir(exist_ok=True)
    if name == "csv":
        return CsvLog(logs, resume_step)
    if name == "tensorboard":
        return TensorBoardLog(logs, resume_step)
    if name == "wandb":
        return WandbLog(logs, resume_step, cfg)
    raise UserError(f"unknown trainer.logger {name!r}; valid: {', '.join(LOGGERS)}")


class RunLogs(pl.Callback):
    """The logs of a run or of each member of a pack (``records[k]`` is member k's record).

    Put after ``RecordKeeper`` in the callbacks: it logs the epoch entries that one appended."""

    def __init__(self, cfgs: list[DictConfig], run_dirs: list[Path], records: list[dict]):
        tc = cfgs[0].trainer
        self.name = tc.get("logger", "none")
        self.every = int(tc.get("log_every_n_steps", 50))
        self.cfgs, self.run_dirs, self.records = cfgs, [Path(d) for d in run_dirs], records
        self.logs: list = []
        self._prev = (0.0, 0.0, 0)  # the task's running sums (loss, correct, n) at the last row
        self._pending: list[tuple] = []  # step rows not written yet (device tensors)
        self._flushed = time.monotonic()

    def on_train_start(self, trainer, task) -> None:
        if self.name == "none" or self.logs:
            return
        # the checkpoint is restored by now: steps_done is the step the run resumes from
        self.logs = [open_log(self.name, d, task.steps_done, c) for c, d in zip(self.cfgs, self.run_dirs)]

    def on_train_epoch_start(self, trainer, task) -> None:
        self._prev = (0.0, 0.0, 0)  # the task resets its sums at each epoch's start

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx) -> None:
        if not self.logs or task.steps_done % self.every:
            return
        t = task._train
        if not isinstance(t["loss"], torch.Tensor) or t["n"] == self._prev[2]:
            return
        # the sums since the last row, still on the device; read in batches (one sync) below
        loss, correct = t["loss"] - self._prev[0], t["correct"] - self._prev[1]
        n = t["n"] - self._prev[2]
        self._prev = (t["loss"], t["correct"], t["n"])
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        self._pending.append((task.steps_done, task.current_epoch + 1, loss, correct, n, lr))
        if not loss.is_cuda or time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self._flush(task)

    def _flush(self, task) -> None:
        """Write the pending step rows. On a GPU that reads the device (a sync), so it happens at
        most every FLUSH_SECONDS and at each epoch's end, not every ``log_every_n_steps``."""
        self._flushed = time.monotonic()
        for step, epoch, loss, correct, n, lr in self._pending:
            losses = loss.tolist()
            accs = correct.tolist() if isinstance(correct, torch.Tensor) else None
            for k, log in enumerate(self.logs):
                if k in task.diverged:
                    continue
                row = {"epoch": epoch, "train_loss_step": losses[k] / n}
                if accs is not None:
                    row["train_acc_step"] = 100.0 * accs[k] / n
                if lr is not None:
                    row["lr"] = lr
                log.log_step(step, row)
        self._pending = []

    def on_train_epoch_end(self, trainer, task) -> None:
        self._flush(task)
        for k, log in enumerate(self.logs):
            if k not in task.diverged:
                log.log_epochs(task.histories[k])

    def close(self) -> None:
        """After the run (completed, failed or interrupted): the final epochs (with the test
        metrics) and the loggers closed. Safe to call when nothing was opened."""
        for record, log in zip(self.records, self.logs):
            try:
                log.log_epochs(list(record.get("epochs") or []), final=True)
            finally:
                log.close()
        self.logs = []
