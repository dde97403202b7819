"""The LightningModule: one model — or a pack of K models trained in lockstep — on one dataset,
with per-epoch metric history per model.

A pack (``ssm_cli.layers.packed``) trains K runs that differ only in their SSM cores on the same
batches: the loss is the sum of the members' losses, so each member gets exactly its own gradient,
and metrics, divergence and history are kept per member. A single run is the pack of one.

Evaluation sets are ``val``, ``test`` and the dataset's extra views (e.g. ``test_8k``, evaluated
with the model's rate set to 2). ``trainer.test_at`` says when the sets other than ``val`` are
evaluated: ``best`` (default) once, at each member's best validation epoch (``train/best.py``);
``every``: every set every epoch (test curves, and the evaluation cost of all sets each epoch).

The module is put together from one file per concern:

- ``train/metrics.py``: losses, per-member metric sums, divergence checks (``Diverged``);
- ``train/best.py``: the best-epoch weights and the test pass;
- ``train/checkpoint.py``: what the checkpoint carries (and the callback writing it);
- ``train/optim.py``: the optimizer and the learning-rate schedules;
- ``train/cuda_graph.py``: the training step captured in a CUDA graph (``trainer.cuda_graphs``).
"""
from __future__ import annotations

import time

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from ssm_cli.data.base import DataSpec
from ssm_cli.layers.base import set_input_noise
from ssm_cli.trace import trace
from ssm_cli.train.best import BestWeights
from ssm_cli.train.checkpoint import CheckpointState
from ssm_cli.train.cuda_graph import CudaGraphStep
from ssm_cli.train.device import compiles, synchronize
from ssm_cli.train.metrics import MemberMetrics
from ssm_cli.model import build_models
from ssm_cli.train.optim import make_optimizer, make_schedule


class SequenceTask(MemberMetrics, BestWeights, CheckpointState, pl.LightningModule):
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
        self.eval_noise: dict[str, tuple[float, float]] = {}  # view -> input noise (set by run._task)
        self.loop_names = list(eval_names)  # the sets the evaluation loop gets, in dataloader order
        self.steps_per_epoch = steps_per_epoch
        self.model = build_models([c.model for c in cfgs], spec, compiled=compiles(self.cfg), seed=seed)
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

    # ----- training
    def on_train_epoch_start(self) -> None:
        self._reset_epoch()
        synchronize(self.device)
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

    def configure_optimizers(self):
        optimizer, self.group_counts = make_optimizer(self.cfg, self.members, self.device)
        sched = make_schedule(self.cfg.scheduler, optimizer, self.steps_per_epoch, self.cfg.trainer.epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ----- evaluation
    def on_validation_start(self) -> None:
        # Evaluating must not move the random stream that training draws from (dropout on a CPU):
        # each DataLoader pass draws a seed from it, so test_at=best and test_at=every, which pass
        # over different sets, would otherwise draw different dropout masks.
        self._rng_before_eval = torch.get_rng_state()

    def on_validation_end(self) -> None:
        torch.set_rng_state(self._rng_before_eval)

    def on_validation_epoch_start(self) -> None:
        if self._t_train is not None:
            synchronize(self.device)
            self._epoch_train_seconds += time.perf_counter() - self._t_train
            self._t_train = None
        self.check_finite()
        self._t_eval = time.perf_counter()

    def on_validation_epoch_end(self) -> None:
        trace(f"evaluation of epoch {self.current_epoch + 1} done")
        if self._t_eval is not None:
            synchronize(self.device)
            self._epoch_eval_seconds += time.perf_counter() - self._t_eval
            self._t_eval = None

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        x, y = batch[:2]  # under DDP (x, y, weight): this rank's share (train/ddp.py)
        name = self.loop_names[dataloader_idx]
        noise = self.eval_noise.get(name)  # (amplitude, omega) of a noisy view (run.noise_eval_views)
        if noise:
            set_input_noise(self.model, *noise)
        try:
            out = self(x, rate=self.eval_rates[self.eval_names.index(name)])  # (K B O)
        finally:
            if noise:
                set_input_noise(self.model, 0.0)
        self._account_eval(name, out, y)
