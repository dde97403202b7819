"""The LightningModule: one model — or a pack of K models trained in lockstep — on one dataset,
with per-epoch metric history per model.

A pack (``ssm_cli.layers.packed``) trains K runs that differ only in their SSM cores on the same
batches: the loss is the sum of the members' losses, so each member gets exactly its own gradient,
and metrics, divergence and history are kept per member. A single run is the pack of one.

Evaluation sets are ``val``, ``test`` and the dataset's extra views (e.g. ``test_8k``, evaluated
with the model's rate set to 2). The record reports the test metric at each member's best
validation epoch (``ssm_cli.train.record.best_epoch``: max accuracy / min RMSE, ties: the earliest).
``trainer.test_at`` says when the sets other than ``val`` are evaluated:

- ``best`` (default): each epoch evaluates ``val`` only. Whenever an epoch becomes a member's best
  so far, the task copies that member's weights and buffers (``best_states``, on the device, saved
  in checkpoints so a resumed run picks the same weights); after the last epoch each member's copy
  is loaded and the other sets are evaluated once, all members in one pass
  (``ssm_cli.train.run.run_test_pass``). Their metrics join the best epoch's history entry, so
  only that entry has test keys.
- ``every``: every set every epoch (test curves, and the evaluation cost of all sets each epoch).
"""
from __future__ import annotations

import math
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from ssm_cli.data.base import DataSpec
from ssm_cli.trace import trace
from ssm_cli.train.model import build_models
from ssm_cli.train.record import best_epoch


CHECK_EVERY = 100


class Diverged(RuntimeError):
    """The training loss became NaN or Inf (of every member of a pack)."""

    def __init__(self, step: int):
        super().__init__(f"loss is not finite at step {step}")
        self.step = step


class SequenceTask(pl.LightningModule):
    """``cfgs``: one run's config, or the configs of a pack's members (same everything but the
    model's SSM-core options; ``cfgs[0]`` gives the shared settings). ``seed``: each member's
    model is built right after ``torch.manual_seed(seed)``, so a member starts from exactly the
    weights its run would have alone."""

    def __init__(self, cfgs: DictConfig | list[DictConfig], spec: DataSpec, eval_names: list[str],
                 eval_rates: list[float], steps_per_epoch: int, seed: int | None = None):
        super().__init__()
        cfgs = list(cfgs) if isinstance(cfgs, (list, tuple)) else [cfgs]
        self.cfg, self.K, self.spec = cfgs[0], len(cfgs), spec
        self.eval_names, self.eval_rates = list(eval_names), list(eval_rates)
        self.loop_names = list(eval_names)  # the sets the evaluation loop gets, in dataloader order
        self.steps_per_epoch = steps_per_epoch
        compile_post = self.cfg.trainer.compile
        if compile_post == "auto":
            compile_post = torch.cuda.is_available() and self.cfg.trainer.accelerator != "cpu"
        self.model = build_models([c.model for c in cfgs], spec, compile_post=bool(compile_post), seed=seed)
        self.members = list(self.model.members) if self.K > 1 else [self.model]
        # per member: one dict of metrics per finished epoch (saved in checkpoints)
        self.histories: list[list[dict]] = [[] for _ in range(self.K)]
        self.diverged: dict[int, int] = {}  # member -> first step whose loss was not finite
        # per member: {"epoch": e, "state": its state_dict cloned} at its best validation epoch so
        # far, while that epoch has no test metrics (trainer.test_at=best); saved in checkpoints
        self.best_states: list[dict | None] = [None] * self.K
        self.train_seconds = 0.0       # time spent in training steps, over all sessions
        self.steps_done = 0            # optimizer steps, over all sessions (the divergence step)
        # Manual optimisation: one code path for eager steps and CUDA-graph replays.
        self.automatic_optimization = False
        self.graph_step: CudaGraphStep | None = None
        self._reset_epoch()

    # ----- metrics
    def _reset_epoch(self) -> None:
        # sums per member: tensors of shape (K,) once the first batch is in
        self._train = {"loss": 0.0, "correct": 0.0, "n": 0}
        self._eval = {name: {"loss": 0.0, "correct": 0.0, "sq": 0.0, "n": 0} for name in self.eval_names}
        self._t_train = None
        self._epoch_train_seconds = 0.0
        self._t_eval = None
        self._epoch_eval_seconds = 0.0

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member mean losses (K,) of out (K, B, O) against y (B, ...)."""
        out = out.float()
        K, B_ = out.shape[:2]
        if self.spec.task == "regression":
            return ((out - y.float().view(1, B_, -1)) ** 2).flatten(1).mean(1)  # (K)
        return F.cross_entropy(out.flatten(0, 1), y.repeat(K), reduction="none").view(K, B_).mean(1)  # (K)

    def forward(self, x: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """Logits (K, B, d_output); K = 1 for a single run."""
        out = self.model(x, rate=rate)
        return out if self.K > 1 else out[None]

    def clip_gradients_(self) -> None:
        """Gradient-norm clipping, member by member (``trainer.grad_clip``; 0 = off)."""
        clip = self.cfg.trainer.grad_clip
        if clip:
            for m in self.members:
                torch.nn.utils.clip_grad_norm_(m.parameters(), clip)

    def on_train_epoch_start(self) -> None:
        self._reset_epoch()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._t_train = time.perf_counter()

    def training_step(self, batch, batch_idx):
        x, y, *weight = batch  # under DDP, this rank's share of the batch and its weight (train/ddp.py)
        opt, sched = self.optimizers(), self.lr_schedulers()
        use_graph = self.cfg.trainer.cuda_graphs and x.is_cuda
        if use_graph and self.graph_step is None:
            self.graph_step = CudaGraphStep(self, opt.optimizer)
        if use_graph and self.graph_step.accepts(x, y):
            out, losses = self.graph_step(x, y)
        else:
            out = self(x)
            losses = self._loss(out, y)
            opt.zero_grad(set_to_none=True)
            scale = weight[0] if weight else 1.0
            self.manual_backward(losses.sum() * scale)  # members share no parameters: each gets its own gradient
            self.clip_gradients_()
            opt.step()
        sched.step()
        self.steps_done += 1
        self._account(out.detach(), losses.detach(), y, batch_idx)
        if self.steps_done <= 8 or self.steps_done % 300 == 0:
            trace(f"step {self.steps_done} done")
        return losses.sum()

    def _account(self, out: torch.Tensor, losses: torch.Tensor, y: torch.Tensor, batch_idx: int) -> None:
        """Accumulate per-member loss/accuracy on the device; reading a value forces a GPU sync, so
        divergence is checked every CHECK_EVERY steps, with each member's first bad step remembered."""
        n = y.shape[0]
        t = self._train
        t["loss"] = t["loss"] + losses * n  # (K)
        if self.spec.task == "classification":
            t["correct"] = t["correct"] + (out.argmax(-1) == y).sum(-1)  # (K)
        t["n"] += n
        if not isinstance(t.get("bad_step"), torch.Tensor):
            t["bad_step"] = torch.full((self.K,), -1, dtype=torch.long, device=losses.device)
        bad = ~torch.isfinite(losses) & (t["bad_step"] < 0)  # (K)
        t["bad_step"] = torch.where(bad, torch.full_like(t["bad_step"], self.steps_done - 1), t["bad_step"])
        if batch_idx % CHECK_EVERY == CHECK_EVERY - 1 or not losses.is_cuda:
            self.check_finite()

    def check_finite(self) -> None:
        """Note members whose loss went non-finite; raise Diverged once every member has.

        A diverged member of a pack trains on as dead weight (its NaNs stay in its own parameters
        and activations); the others are unaffected (``ssm_cli.layers.packed``: NaN and Inf never
        cross from one member to another, forward or backward), and its record says where it
        diverged."""
        bad = self._train.get("bad_step")
        if not isinstance(bad, torch.Tensor):
            return
        for k, step in enumerate(bad.tolist()):
            if step >= 0 and k not in self.diverged:
                self.diverged[k] = int(step)
        if len(self.diverged) == self.K:
            raise Diverged(min(self.diverged.values()))

    def on_validation_start(self) -> None:
        # Evaluating must not move the random stream that training draws from (dropout on a CPU):
        # each DataLoader pass draws a seed from it, so test_at=best and test_at=every, which pass
        # over different sets, would otherwise draw different dropout masks.
        self._rng_before_eval = torch.get_rng_state()

    def on_validation_end(self) -> None:
        torch.set_rng_state(self._rng_before_eval)

    def on_validation_epoch_start(self) -> None:
        if self._t_train is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self._epoch_train_seconds += time.perf_counter() - self._t_train
            self._t_train = None
        self.check_finite()
        self._t_eval = time.perf_counter()

    def on_validation_epoch_end(self) -> None:
        trace(f"evaluation of epoch {self.current_epoch + 1} done")
        if self._t_eval is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self._epoch_eval_seconds += time.perf_counter() - self._t_eval
            self._t_eval = None

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        x, y = batch[:2]  # under DDP (x, y, weight): this rank's share (train/ddp.py)
        name = self.loop_names[dataloader_idx]
        out = self(x, rate=self.eval_rates[self.eval_names.index(name)])  # (K B O)
        acc = self._eval[name]
        n = y.shape[0]
        acc["loss"] = acc["loss"] + self._loss(out, y).detach() * n  # (K)
        if self.spec.task == "classification":
            acc["correct"] = acc["correct"] + (out.argmax(-1) == y).sum(-1)  # (K)
        else:
            acc["sq"] = acc["sq"] + ((out.float() - y.float().view(1, n, -1)) ** 2).flatten(1).sum(1)  # (K)
        acc["n"] += n

    def _per_member(self, v) -> list[float]:
        """A (K,) tensor of sums -> K floats (one device sync)."""
        return v.tolist() if isinstance(v, torch.Tensor) else [float(v)] * self.K

    def _over_ranks(self, sums: dict) -> dict:
        """``sums`` (loss, correct, sq, n) added over the DDP ranks; as they are with one rank."""
        from ssm_cli.train.ddp import all_sum, world_size

        if world_size() == 1:
            return sums
        keys = [k for k in ("loss", "correct", "sq", "n") if k in sums]
        stacked = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64, device=self.device).expand(self.K)
                               for k in keys])  # (keys K)
        total = all_sum(stacked)
        out = {**sums, **{k: total[i] for i, k in enumerate(keys)}}
        out["n"] = int(total[keys.index("n"), 0].item())
        return out

    def epoch_metrics(self) -> list[dict]:
        """The finished epoch's metrics, one dict per member: accuracies in percent, RMSE for regression."""
        self.check_finite()
        t = self._over_ranks(self._train)
        common: dict = {"epoch": self.current_epoch + 1, "step": self.steps_done,
                        "lr": self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else None,
                        "train_seconds": self._epoch_train_seconds, "eval_seconds": self._epoch_eval_seconds}
        ms = [dict(common) for _ in range(self.K)]
        if t["n"]:
            for m, loss, correct in zip(ms, self._per_member(t["loss"]), self._per_member(t["correct"])):
                m["train_loss"] = loss / t["n"]
                if self.spec.task == "classification":
                    m["train_acc"] = 100.0 * correct / t["n"]
                m["train_samples_per_s"] = t["n"] / max(self._epoch_train_seconds, 1e-9)
        for m, e in zip(ms, self.eval_metrics()):
            m.update(e)
        return ms

    def eval_metrics(self) -> list[dict]:
        """Per member, the metrics of the sets evaluated since the last reset: ``<set>_loss`` and
        ``<set>_acc`` (percent) or ``<set>_rmse``."""
        ms: list[dict] = [{} for _ in range(self.K)]
        for name, acc in self._eval.items():
            acc = self._over_ranks(acc)
            if not acc["n"]:
                continue
            per = self._per_member
            for m, loss, correct, sq in zip(ms, per(acc["loss"]), per(acc["correct"]), per(acc["sq"])):
                m[f"{name}_loss"] = loss / acc["n"]
                if self.spec.task == "classification":
                    m[f"{name}_acc"] = 100.0 * correct / acc["n"]
                else:
                    m[f"{name}_rmse"] = math.sqrt(sq / (acc["n"] * self.spec.d_output))
        return ms

    # ----- the test sets at the best validation epoch (trainer.test_at)
    @property
    def test_names(self) -> list[str]:
        """The evaluation sets that do not choose the best epoch: all but ``val``."""
        return [n for n in self.eval_names if n != "val"]

    def _has_test_metrics(self, entry: dict) -> bool:
        return all(f"{n}_loss" in entry for n in self.test_names)

    def keep_best_states(self) -> None:
        """Once an epoch's history entries are in: copy the weights and buffers of each member whose
        new epoch is its best so far and lacks the test metrics (a tie keeps the earlier copy)."""
        for k, history in enumerate(self.histories):
            best = best_epoch(history, self.spec.task) if k not in self.diverged else None
            if best is None:
                continue
            if self._has_test_metrics(best):  # evaluated with its epoch (test_at=every): nothing to keep
                self.best_states[k] = None
            elif best is history[-1]:
                state = {n: t.detach().clone() for n, t in self.members[k].state_dict().items()}
                self.best_states[k] = {"epoch": best["epoch"], "state": state}

    def untested_members(self) -> list[int]:
        """Members (not diverged) whose best epoch has no test metrics yet."""
        out = []
        for k, history in enumerate(self.histories):
            best = best_epoch(history, self.spec.task)
            if k not in self.diverged and best is not None and not self._has_test_metrics(best):
                out.append(k)
        return out

    def load_best_states(self, members: list[int]) -> None:
        """Load each of ``members``' weights and buffers of its best epoch (in place)."""
        for k in members:
            best, kept = best_epoch(self.histories[k], self.spec.task), self.best_states[k]
            if kept is None or kept["epoch"] != best["epoch"]:
                raise RuntimeError(f"member {k}: no weights kept of its best epoch {best['epoch']} "
                                   f"(kept: {kept and kept['epoch']})")
            self.members[k].load_state_dict(kept["state"])

    def evaluate_on(self, names: list[str]) -> None:
        """The next evaluation loop gets the loaders of ``names``, in this order; sums start at 0."""
        self.loop_names = list(names)
        self._reset_epoch()

    # ----- optimisation
    def configure_optimizers(self):
        from ssm_cli.layers import cosine_with_warmup, param_groups

        o, s = self.cfg.optimizer, self.cfg.scheduler
        # member by member, so a member's groups are those of its run alone (and can be cut out again)
        # configs written before the key existed: every bias and norm decayed, as those runs began
        decay_all = bool(o.get("bias_norm_weight_decay", True))
        per_member = [param_groups(m, lr=o.lr, weight_decay=o.weight_decay, bias_norm_weight_decay=decay_all)
                      for m in self.members]
        self.group_counts = [len(g) for g in per_member]  # saved: a pack's checkpoint can be cut per member
        groups = [g for gs in per_member for g in gs]
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
            losses = self.task._loss(out, y)  # (K)
        losses.sum().backward()
        self.task.clip_gradients_()
        self.optimizer.step()
        return out, losses

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
            trace("training step captured in a CUDA graph")
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return self.out, self.loss
