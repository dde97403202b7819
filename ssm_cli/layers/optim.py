"""AdamW parameter groups from the layers' tags (FACTS §1); the schedules are in ``ssm_cli.train.optim``.

Convention of the S4 reference's training pipeline: tagged SSM parameters (dt, A, B; C when the
core option ``lr_C`` is set) get their own lr and weight decay 0; biases, the norms' parameters and
embedding tables get the global lr and weight decay 0 (``bias_norm_weight_decay=False``, the
reference's default); every other parameter (C by default, D, the linears' weights) is in the
default group with the global lr and weight decay.
"""
from __future__ import annotations

import torch


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

    Tagged parameters (``_optim``) get their tag's lr and wd; with ``bias_norm_weight_decay=False``
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
        key = ("default",) if tag is None else (tag["lr"], tag.get("weight_decay", 0.0))
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
    """Unpickling only. Checkpoints written while the cosine schedule lived in this module hold an
    instance of this class (the scheduler's ``schedule`` attribute, unused on resume); the schedules
    are in ``ssm_cli.train.optim``."""
