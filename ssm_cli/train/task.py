"""The LightningModule: one model on one dataset, with per-epoch metric history.

Evaluation sets are ``val``, ``test`` and the dataset's extra views (e.g. ``test_8k``, evaluated
with the model's rate set to 2). Every set is evaluated every epoch, so the record can report the
test metric at the best validation epoch without keeping one checkpoint per epoch.
"""
from __future__ import annotations

import math
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from ssm_cli.data.base import DataSpec
from ssm_cli.train.model import build_model


CHECK_EVERY = 100


class Diverged(RuntimeError):
    """The training loss became NaN or Inf."""

    def __init__(self, step: int):
        super().__init__(f"loss is not finite at step {step}")
        self.step = step


class SequenceTask(pl.LightningModule):
    def __init__(self, cfg: DictConfig, spec: DataSpec, eval_names: list[str], eval_rates: list[float],
                 steps_per_epoch: int):
        super().__init__()
        self.cfg, self.spec = cfg, spec
        self.eval_names, self.eval_rates = eval_names, eval_rates
        self.steps_per_epoch = steps_per_epoch
        compile_post = cfg.trainer.compile
        if compile_post == "auto":
            compile_post = torch.cuda.is_available() and cfg.trainer.accelerator != "cpu"
        self.model = build_model(cfg.model, spec, compile_post=bool(compile_post))
        self.history: list[dict] = []  # one dict of metrics per finished epoch (saved in checkpoints)
        self.train_seconds = 0.0       # time spent in training steps, over all sessions
        self.steps_done = 0            # optimizer steps, over all sessions (the divergence step)
        # Manual optimisation: one code path for eager steps and CUDA-graph replays.
        self.automatic_optimization = False
        self.graph_step: CudaGraphStep | None = None
        self._reset_epoch()

    # ----- metrics
    def _reset_epoch(self) -> None:
        self._train = {"loss": 0.0, "correct": 0.0, "n": 0}
        self._eval = {name: {"loss": 0.0, "correct": 0.0, "sq": 0.0, "n": 0} for name in self.eval_names}
        self._t_train = None
        self._epoch_train_seconds = 0.0

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = out.float()
        if self.spec.task == "regression":
            return F.mse_loss(out, y.float().view_as(out))
        return F.cross_entropy(out, y)

    def forward(self, x: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        return self.model(x, rate=rate)

    def on_train_epoch_start(self) -> None:
        self._reset_epoch()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._t_train = time.perf_counter()

    def training_step(self, batch, batch_idx):
        x, y = batch
        opt, sched = self.optimizers(), self.lr_schedulers()
        use_graph = self.cfg.trainer.cuda_graphs and x.is_cuda
        if use_graph and self.graph_step is None:
            self.graph_step = CudaGraphStep(self, opt.optimizer)
        if use_graph and self.graph_step.accepts(x, y):
            out, loss = self.graph_step(x, y)
        else:
            out = self(x)
            loss = self._loss(out, y)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            if self.cfg.trainer.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.trainer.grad_clip)
            opt.step()
        sched.step()
        self.steps_done += 1
        self._account(out.detach(), loss.detach(), y, batch_idx)
        return loss

    def _account(self, out: torch.Tensor, value: torch.Tensor, y: torch.Tensor, batch_idx: int) -> None:
        """Accumulate loss/accuracy on the device; reading a value forces a GPU sync, so divergence
        is checked every CHECK_EVERY steps, with the first bad step remembered exactly."""
        n = y.shape[0]
        t = self._train
        t["loss"] = t["loss"] + value * n
        if self.spec.task == "classification":
            t["correct"] = t["correct"] + (out.argmax(-1) == y).sum()
        t["n"] += n
        if not isinstance(t.get("bad_step"), torch.Tensor):
            t["bad_step"] = torch.full((), -1, dtype=torch.long, device=value.device)
        bad = ~torch.isfinite(value) & (t["bad_step"] < 0)
        t["bad_step"] = torch.where(bad, torch.full_like(t["bad_step"], self.steps_done - 1), t["bad_step"])
        if batch_idx % CHECK_EVERY == CHECK_EVERY - 1 or not value.is_cuda:
            self.check_finite()

    def check_finite(self) -> None:
        bad = self._train.get("bad_step")
        if isinstance(bad, torch.Tensor) and int(bad) >= 0:
            raise Diverged(int(bad))

    def on_validation_epoch_start(self) -> None:
        if self._t_train is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self._epoch_train_seconds += time.perf_counter() - self._t_train
            self._t_train = None
        self.check_finite()

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        x, y = batch
        name = self.eval_names[dataloader_idx]
        out = self(x, rate=self.eval_rates[dataloader_idx])
        acc = self._eval[name]
        n = y.shape[0]
        acc["loss"] = acc["loss"] + self._loss(out, y).detach() * n
        if self.spec.task == "classification":
            acc["correct"] = acc["correct"] + (out.argmax(-1) == y).sum()
        else:
            acc["sq"] = acc["sq"] + ((out.float() - y.float().view_as(out)) ** 2).sum()
        acc["n"] += n

    def epoch_metrics(self) -> dict:
        """The finished epoch's metrics: accuracies in percent, RMSE for regression."""
        self.check_finite()
        m: dict = {"epoch": self.current_epoch + 1, "step": self.steps_done,
                   "lr": self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else None,
                   "train_seconds": self._epoch_train_seconds}
        t = self._train
        if t["n"]:
            m["train_loss"] = float(t["loss"]) / t["n"]
            if self.spec.task == "classification":
                m["train_acc"] = 100.0 * float(t["correct"]) / t["n"]
            m["train_samples_per_s"] = t["n"] / max(self._epoch_train_seconds, 1e-9)
        for name, acc in self._eval.items():
            if not acc["n"]:
                continue
            m[f"{name}_loss"] = float(acc["loss"]) / acc["n"]
            if self.spec.task == "classification":
                m[f"{name}_acc"] = 100.0 * float(acc["correct"]) / acc["n"]
            else:
                m[f"{name}_rmse"] = math.sqrt(float(acc["sq"]) / (acc["n"] * self.spec.d_output))
        return m

    # ----- optimisation
    def configure_optimizers(self):
        from ssm_cli.layers import cosine_with_warmup, param_groups

        o, s = self.cfg.optimizer, self.cfg.scheduler
        groups = param_groups(self.model, lr=o.lr, weight_decay=o.weight_decay)
        for g in groups:
            g["initial_lr"] = float(g["lr"])  # schedules scale this float, never a tensor
        kwargs = {}
        if self.cfg.trainer.cuda_graphs and torch.cuda.is_available() and self.device.type == "cuda":
            # A captured step reads the learning rates from device tensors that the schedule fills.
            for g in groups:
                g["lr"] = torch.tensor(float(g["lr"]), device=self.device)
            kwargs = {"fused": True, "capturable": True}
        optimizer = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas), **kwargs)
        total = self.steps_per_epoch * self.cfg.trainer.epochs
        if s.name == "cosine":
            sched = cosine_with_warmup(optimizer, s.warmup_steps, total)
        elif s.name == "step":
            milestones = [m * self.steps_per_epoch for m in s.milestones]
            warm = max(int(s.warmup_steps), 0)

            def factor(step: int) -> float:
                w = min(1.0, (step + 1) / warm) if warm else 1.0
                return w * s.gamma ** sum(step >= m for m in milestones)
            sched = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        else:  # constant
            warm = max(int(s.warmup_steps), 0)
            sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warm) if warm else 1.0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ----- checkpoints carry the history, so a resumed run continues its record
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ssm_history"] = self.history
        checkpoint["ssm_train_seconds"] = self.train_seconds
        checkpoint["ssm_steps_done"] = self.steps_done

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("ssm_history", []))
        self.train_seconds = float(checkpoint.get("ssm_train_seconds", 0.0))
        self.steps_done = int(checkpoint.get("ssm_steps_done", 0))


class CudaGraphStep:
    """A whole training step (forward, backward, clipping, AdamW) captured once in a CUDA graph.

    These models are launch-bound on a GPU: a step of the sCIFAR ablation model is ~1,000 small
    kernels. Replaying a captured graph removes the CPU launch cost (about 2x on an H100,
    benchmarks/README.md). The first ``WARMUP`` steps run eagerly on a side stream (cuFFT plans,
    allocator), then one step is captured; later steps copy the batch into the static inputs and
    replay. Batches of another shape (the last of an epoch) run eagerly — they update the same
    parameters and optimizer state in place. Requires AdamW(fused, capturable) with tensor lrs.
    """

    WARMUP = 3

    def __init__(self, task: "SequenceTask", optimizer: torch.optim.Optimizer):
        self.task, self.optimizer = task, optimizer
        self.graph: torch.cuda.CUDAGraph | None = None
        self.shape: tuple | None = None
        self.warm = 0
        self.stream = torch.cuda.Stream()

    def accepts(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        if self.shape is None:
            self.shape = (tuple(x.shape), x.dtype, tuple(y.shape))
        return self.shape == (tuple(x.shape), x.dtype, tuple(y.shape))

    def _step(self, x: torch.Tensor, y: torch.Tensor):
        """Forward, backward, clipping, AdamW: eager during warm-up, recorded during capture."""
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            out = self.task(x)
            loss = self.task._loss(out, y)
        loss.backward()
        clip = self.task.cfg.trainer.grad_clip
        if clip:
            torch.nn.utils.clip_grad_norm_(self.task.model.parameters(), clip)
        self.optimizer.step()
        return out, loss

    def _autocast(self):
        # Lightning's autocast (bf16-mixed) is active around training_step; captured code must not
        # use the autocast weight cache (it is freed when autocast exits).
        enabled = torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda") if enabled else torch.float32
        return torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False)

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        if self.warm < self.WARMUP:
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                out, loss = self._step(x, y)
            torch.cuda.current_stream().wait_stream(self.stream)
            self.warm += 1
            return out, loss
        if self.graph is None:
            self.x, self.y = x.clone(), y.clone()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out, self.loss = self._step(self.x, self.y)
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return self.out, self.loss
