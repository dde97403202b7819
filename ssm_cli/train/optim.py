"""The optimizer and every learning-rate schedule of a run (``optimizer.*``, ``scheduler.*``).

AdamW over the parameter groups of ``ssm_cli.layers.optim.param_groups`` (the S4 reference's
convention: the SSM parameters' own lr and no weight decay, biases and norms without decay),
built member by member so a pack's groups are its members' groups in order. Schedules are
stepped once per optimizer step (Lightning ``interval="step"``):

- ``cosine``: linear warmup from 0 over ``warmup_steps``, then cosine down to 0 at the last step;
- ``step``: linear warmup to 1 over ``warmup_steps``, times ``gamma`` at each of the ``milestones``
  (epochs);
- ``constant``: linear warmup to 1 over ``warmup_steps``, then 1.
"""
from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch.optim.lr_scheduler import LambdaLR


def make_optimizer(cfg: DictConfig, members: list[torch.nn.Module], device: torch.device
                   ) -> tuple[torch.optim.Optimizer, list[int]]:
    """AdamW over the members' groups; also the number of groups of each member (saved in
    checkpoints: a pack's checkpoint can be cut per member, ``train/pack.py::unpack_checkpoint``).

    With ``trainer.cuda_graphs`` on a GPU the optimizer is fused and capturable, its learning
    rates device tensors that the schedule fills (a captured step reads them there)."""
    from ssm_cli.layers import param_groups

    o = cfg.optimizer
    # configs written before the key existed: every bias and norm decayed, as those runs began
    decay_all = bool(o.get("bias_norm_weight_decay", True))
    per_member = [param_groups(m, lr=o.lr, weight_decay=o.weight_decay, bias_norm_weight_decay=decay_all)
                  for m in members]
    groups = [g for gs in per_member for g in gs]
    for g in groups:
        g["initial_lr"] = float(g["lr"])  # schedules scale this float, never a tensor
    kwargs = {}
    if cfg.trainer.cuda_graphs and device.type == "cuda":
        for g in groups:
            g["lr"] = torch.tensor(float(g["lr"]), device=device)
        kwargs = {"fused": True, "capturable": True}
    optimizer = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas), **kwargs)
    return optimizer, [len(g) for g in per_member]


def make_schedule(s: DictConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int) -> LambdaLR:
    """The ``scheduler`` config's schedule over ``epochs * steps_per_epoch`` optimizer steps."""
    if s.name == "cosine":
        return cosine_with_warmup(optimizer, s.warmup_steps, steps_per_epoch * epochs)
    if s.name == "step":
        return step_with_warmup(optimizer, s.warmup_steps, [m * steps_per_epoch for m in s.milestones], s.gamma)
    return constant_with_warmup(optimizer, s.warmup_steps)


class WarmupCosine:
    """lr factor: step/warmup for step < warmup, then 0.5 (1 + cos(pi progress)) down to 0 at total.

    A callable object, not a function: the scheduler's checkpoint state holds its attributes."""

    def __init__(self, warmup_steps: int, total_steps: int):
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class CosineWithWarmup(LambdaLR):
    """LambdaLR with the warmup-cosine factor; step it once per optimizer step. Printable.

    Holds only numbers besides the factor (LambdaLR pickles every attribute into the checkpoint)."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)
        super().__init__(optimizer, WarmupCosine(warmup_steps, total_steps))

    def __repr__(self) -> str:
        return f"cosine_with_warmup(warmup_steps={self.warmup_steps}, total_steps={self.total_steps})"

    def describe(self) -> dict:
        """JSON-able description."""
        return {"name": "cosine_with_warmup", "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "interval": "step"}


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> CosineWithWarmup:
    """Linear warmup from 0 over ``warmup_steps``, then cosine to 0 at ``total_steps`` (per optimizer step)."""
    return CosineWithWarmup(optimizer, warmup_steps, total_steps)


def _warmup(warm: int, step: int) -> float:
    """Linear warmup to 1: (step + 1) / warm over the first ``warm`` steps (none for warm = 0)."""
    return min(1.0, (step + 1) / warm) if warm else 1.0


def step_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, milestones: list[int], gamma: float) -> LambdaLR:
    """Warmup, then the lr times ``gamma`` at each milestone (optimizer steps)."""
    warm = max(int(warmup_steps), 0)

    def factor(step: int) -> float:
        return _warmup(warm, step) * gamma ** sum(step >= m for m in milestones)
    return LambdaLR(optimizer, factor)


def constant_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int) -> LambdaLR:
    """Warmup, then a constant lr."""
    warm = max(int(warmup_steps), 0)

    def factor(step: int) -> float:
        return _warmup(warm, step)
    return LambdaLR(optimizer, factor)
