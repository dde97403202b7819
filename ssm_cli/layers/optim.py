"""AdamW parameter groups from the layers' tags, and the cosine-with-warmup schedule (FACTS §1).

Convention of the S4 reference's training pipeline: tagged SSM parameters (dt, A, B; C when the
core option ``lr_C`` is set) get their own lr and weight decay 0; biases, the norms' parameters and
embedding tables get the global lr and weight decay 0 (``bias_norm_weight_decay=False``, the
reference's default); every other parameter (C by default, D, the linears' weights) is in the
default group with the global lr and weight decay.
"""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


NO_DECAY_MODULES = (torch.nn.LayerNorm, torch.nn.BatchNorm1d, torch.nn.Embedding)


def no_decay_names(model: torch.nn.Module) -> set[str]:
    """Names of the parameters the reference exempts from weight decay: biases, norms, embeddings."""
    out = set()
    for mod_name, mod in model.named_modules():
        for p_name, _ in mod.named_parameters(recurse=False):
            if p_name.endswith("bias") or isinstance(mod, NO_DECAY_MODULES):
                out.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    return out


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float,
                 bias_norm_weight_decay: bool = False) -> list[dict]:
    """Groups for ``torch.optim.AdamW``: the default group first, then one per distinct (lr, wd).

    Tagged parameters (``_optim``) get their tag's lr and wd (a wd of None: ``weight_decay``); with ``bias_norm_weight_decay=False``
    the untagged biases, norm parameters and embedding tables get (lr, 0). Each group:
    {"params": [...], "param_names": [...], "lr": float, "weight_decay": float}.
    Only parameters with requires_grad are included (frozen B is a buffer anyway).
    """
    groups: dict[tuple, dict] = {("default",): {"params": [], "param_names": [], "lr": float(lr),
                                                "weight_decay": float(weight_decay)}}
    exempt = set() if bias_norm_weight_decay else no_decay_names(model)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        tag = getattr(p, "_optim", None)
        if tag is None and name in exempt:
            tag = {"lr": float(lr), "weight_decay": 0.0}
        wd = None if tag is None else tag.get("weight_decay", 0.0)
        key = ("default",) if tag is None else (tag["lr"], float(weight_decay) if wd is None else wd)
        if key not in groups:
            groups[key] = {"params": [], "param_names": [], "lr": key[0], "weight_decay": key[1]}
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    return [g for k, g in groups.items() if g["params"] or k == ("default",)]


def describe_groups(groups: list[dict]) -> list[dict]:
    """JSON-able summary: lr, weight_decay, n_params (scalars), n_tensors, param_names."""
    return [{"lr": g["lr"], "weight_decay": g["weight_decay"],
             "n_params": int(sum(p.numel() for p in g["params"])), "n_tensors": len(g["params"]),
             "param_names": list(g.get("param_names", []))} for g in groups]


class _WarmupCosine:
    """lr factor: step/warmup for step < warmup, then 0.5 (1 + cos(pi progress)) down to 0 at total."""

    def __init__(self, warmup_steps: int, total_steps: int):
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def __repr__(self) -> str:
        return f"cosine_with_warmup(warmup_steps={self.warmup_steps}, total_steps={self.total_steps})"


class CosineWithWarmup(LambdaLR):
    """LambdaLR with the warmup-cosine factor; step it once per optimizer step. Printable."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
        self.schedule = _WarmupCosine(warmup_steps, total_steps)
        super().__init__(optimizer, self.schedule)

    def __repr__(self) -> str:
        return repr(self.schedule)

    def describe(self) -> dict:
        """JSON-able description."""
        return {"name": "cosine_with_warmup", "warmup_steps": self.schedule.warmup_steps,
                "total_steps": self.schedule.total_steps, "interval": "step"}


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> CosineWithWarmup:
    """Linear warmup from 0 over ``warmup_steps``, then cosine to 0 at ``total_steps`` (per optimizer step)."""
    return CosineWithWarmup(optimizer, warmup_steps, total_steps)
