"""Parity of our sCIFAR ablation network with the authors' implementation (state-spaces/s4), proven by
copying every weight of ours into theirs.

    python benchmarks/parity.py --reference .ref/s4.py                       # check, CPU, < 1 min
    python benchmarks/parity.py --reference .ref/s4.py --json parity.json    # ... and write the table
    python benchmarks/parity.py --reference .ref/s4.py --train --init inv --data data --seed 0 \\
        --json ref-inv-s0.json                                               # train the reference

The reference is the standalone ``models/s4/s4.py`` of state-spaces/s4, imported from ``--reference
PATH`` (never copied into this repository). Its ``S4Block`` is the same module as the training
pipeline's (``src/models/sequence/modules/s4block.py`` + ``kernels/fftconv.py`` + ``kernels/ssm.py``)
but for one detail, which ``ReferenceNetwork`` restores: the pipeline's S4 block does not hand
``tie_dropout`` to its FFT convolution, whose dropout is then elementwise (the standalone ties it).
Around it ``ReferenceNetwork`` rebuilds the pipeline's backbone for ``configs/experiment/cifar/
s4-cifar-ablation.yaml`` (``backbones/model.py`` + ``backbones/block.py``): linear encoder, post-norm
residual blocks whose branch has its own dropout before ``x + y``, mean pooling, linear decoder. Its
settings (``REFERENCE``) are the reference's configs, not ours: our network is composed from our
config (``dataset=scifar preset=short model.init=...``), so the check fails if our defaults drift.

Check (default): for each S4D init, ours and the reference are built, ours' weights are copied into
the reference (``parameter_map``: names, shapes, and the complex conjugation of A, B, C: the
reference stores A = -f(re) - i g(im), ours -f(re) + i g(im), so B and C are conjugated too and the
real kernels are equal), and with dropout off (eval mode) the SSM kernels, the logits and the
gradient of every parameter must agree to float32 tolerance. With dropout on, every dropout call is
recorded (block, order, tied or elementwise, p, shape), and then both networks run with every
dropout replaced by one that draws its mask from a shared generator in one layout (``Replay``):
the logits and gradients agree only if both drop at the same places in the same order. Also
compared: the fresh initialisations of A and B, and the optimizer's (lr, weight decay) per
parameter (ours: ``param_groups``; the reference: its ``_optim`` tags and train.py's hook that
exempts biases and norm parameters from weight decay).

Train (``--train``): trains the reference network for our protocol's epochs on our loaders (same
data, splits and batch order as ``ssm run``), with the reference's own optimizer convention and its
schedule (transformers' cosine with linear warmup, stepped every optimizer step), evaluates val
and test after every epoch, and writes per-epoch accuracies, the test accuracy at the best
validation epoch (as our records report it) and training samples/s.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (REPO, os.path.dirname(os.path.abspath(__file__))):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from ssm_cli.layers import param_groups  # noqa: E402
from ssm_cli.layers.backbone import TiedDropout  # noqa: E402
from speed import load_reference  # noqa: E402  (benchmarks/speed.py, imported the same way)

INITS = ("inv", "lin", "legs", "real", "rand")
S4 = "s4"  # the variant name of the S4 (DPLR) network: our model=s4, the reference's mode=nplr init=legs
MODELS = ("s4d", "s4")

# The reference's sCIFAR ablation settings: configs/experiment/cifar/s4-cifar-ablation.yaml over
# configs/model/s4.yaml, configs/model/layer/s4.yaml (dt_transform softplus, lr of dt/A/B 0.001,
# wd 0, n_ssm 1), configs/optimizer/adamw.yaml, configs/scheduler/cosine_warmup.yaml, with the S4D
# kernel (layer.mode=diag, layer.init=diag-<init>).
REFERENCE = dict(d_input=3, d_output=10, d_model=128, n_layers=4, d_state=64, dropout=0.1, tie_dropout=True,
                 prenorm=False, bidirectional=True, final_act="id", activation="gelu", disc="zoh",
                 dt_min=0.001, dt_max=0.1, dt_transform="softplus", ssm_lr=0.001, n_ssm=1,
                 lr=0.01, weight_decay=0.01, betas=(0.9, 0.999), warmup_steps=900, batch_size=50,
                 rank=1, dplr_init="legs")


# ---- the two networks ---------------------------------------------------------------------------
class ReferenceBlock(nn.Module):
    """backbones/block.py, post-norm, residual 'R': x -> norm(x + drop(S4Block(x))).

    ``init``: an S4D init (kernel mode 'diag', init 'diag-<init>', ZOH) or ``S4``: the S4 ablation's
    layer (configs/model/layer/s4.yaml: mode 'nplr', init 'legs', rank 1; bilinear)."""

    def __init__(self, s4, init: str, r: dict):
        super().__init__()
        H, p = r["d_model"], r["dropout"]
        kernel = (dict(mode="nplr", init=r["dplr_init"], rank=r["rank"]) if init == S4
                  else dict(mode="diag", init=f"diag-{init}", disc=r["disc"]))
        self.s4 = s4.S4Block(
            H, dropout=p, tie_dropout=r["tie_dropout"], transposed=False, final_act=r["final_act"],
            activation=r["activation"], d_state=r["d_state"],
            bidirectional=r["bidirectional"], n_ssm=r["n_ssm"], dt_min=r["dt_min"], dt_max=r["dt_max"],
            dt_transform=r["dt_transform"], lr={"dt": r["ssm_lr"], "A": r["ssm_lr"], "B": r["ssm_lr"]}, wd=0.0,
            verbose=False, **kernel)
        if p > 0:  # the pipeline's FFTConv gets no tie_dropout from its S4Block: elementwise dropout
            self.s4.layer.drop = nn.Dropout(p)
        if p > 0:
            self.res_drop = s4.DropoutNd(p, transposed=False) if r["tie_dropout"] else nn.Dropout(p)
        else:
            self.res_drop = nn.Identity()
        self.norm = nn.LayerNorm(H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.s4(x)  # (B L H)
        return self.norm(x + self.res_drop(y))  # (B L H)


class ReferenceNetwork(nn.Module):
    """backbones/model.py + the cifar pipeline's linear encoder and pooling decoder."""

    def __init__(self, s4, init: str, r: dict = REFERENCE):
        super().__init__()
        self.encoder = nn.Linear(r["d_input"], r["d_model"])
        self.blocks = nn.ModuleList(ReferenceBlock(s4, init, r) for _ in range(r["n_layers"]))
        self.decoder = nn.Linear(r["d_model"], r["d_output"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)  # (B L H)
        for block in self.blocks:
            h = block(h)  # (B L H)
        return self.decoder(h.mean(1))  # (B classes)

    def kernels(self, L: int) -> list[torch.Tensor]:
        """Per block: the real kernel (directions*channels, H, L)."""
        return [b.s4.layer.kernel(L=L)[0] for b in self.blocks]

    def attune(self, L: int) -> None:
        """S4 (DPLR): mark each kernel's C as C~ for length L already. The reference keeps C until
        its first forward, then replaces it in place by C~ = C (I - Abar^L) (``_setup_C``) and
        computes kernels at that length; ours stores C~ from the start, so after copying ours the
        reference must not convert again."""
        for b in self.blocks:
            k = b.s4.layer.kernel
            if hasattr(k, "l_kernel"):
                k.l_kernel.fill_(L)


def build_ours(init: str, overrides: list[str] = ()):
    """Our sCIFAR network as ``ssm run dataset=scifar preset=short model.init=<init>`` builds it
    (``init`` = ``S4``: ``model=s4``, the S4 (DPLR) network)."""
    from ssm_cli.config import compose
    from ssm_cli.data.base import DataSpec
    from ssm_cli.model import build_model

    choice = "model=s4" if init == S4 else f"model.init={init}"
    cfg = compose(["dataset=scifar", "preset=short", choice, *overrides])
    spec = DataSpec(name="scifar", seq_len=1024, d_input=3, d_output=10)
    return build_model(cfg.model, spec), cfg


def our_kernels(model, L: int) -> list[torch.Tensor]:
    out = []
    for b in model.blocks:
        k = b.core.kernel(L)  # (C H L) or (2 C H L)
        out.append(k.reshape(-1, *k.shape[-2:]))  # (dirs*C H L)
    return out


# ---- parameters: names, layouts, copy ------------------------------------------------------------
def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def _conj_pairs(t: torch.Tensor) -> torch.Tensor:
    """(..., 2) real pairs (re, im) -> (re, -im): complex conjugation (its own inverse)."""
    return t * torch.tensor([1.0, -1.0], dtype=t.dtype, device=t.device)


@dataclass
class ParamMap:
    """Our parameter ``ours`` equals ``to_ref(ours)`` reshaped to ``ref``'s shape; ``to_ref`` is its
    own inverse and linear, so gradients map the same way."""

    ours: str
    ref: str
    to_ref: Callable[[torch.Tensor], torch.Tensor] = _identity
    note: str = ""


def parameter_map(ours: nn.Module, ref: nn.Module) -> list[ParamMap]:
    """Every parameter of our S4D network and its place in ``ReferenceNetwork`` (all of both, checked)."""
    maps = [ParamMap("encoder.weight", "encoder.weight"), ParamMap("encoder.bias", "encoder.bias")]
    for i in range(len(ours.blocks)):
        o, r = f"blocks.{i}.", f"blocks.{i}."
        maps += [
            ParamMap(o + "core.log_dt", r + "s4.layer.kernel.inv_dt", note="dt = f(raw), f = dt_transform"),
            ParamMap(o + "core.A_real", r + "s4.layer.kernel.A_real", note="Re A = -f(raw)"),
            ParamMap(o + "core.A_imag", r + "s4.layer.kernel.A_imag",
                     note="Im A = +g(raw) ours, -g(raw) reference: A conjugated"),
            ParamMap(o + "core.B", r + "s4.layer.kernel.B", _conj_pairs, note="conjugated (A is)"),
            ParamMap(o + "core.C", r + "s4.layer.kernel.C", _conj_pairs,
                     note="conjugated (A is); rows: forward, backward kernel"
                          + ("; C~ (ours stores it; the reference after its first forward)"
                             if hasattr(ours.blocks[i].core, "P") else "")),
            *([ParamMap(o + "core.P", r + "s4.layer.kernel.P", _conj_pairs,
                        note="low-rank factor, conjugated (A is)")] if hasattr(ours.blocks[i].core, "P") else []),
            ParamMap(o + "core.D", r + "s4.layer.D"),
            ParamMap(o + "out.weight", r + "s4.output_linear.0.weight"),
            ParamMap(o + "out.bias", r + "s4.output_linear.0.bias"),
            ParamMap(o + "norm.norm.weight", r + "norm.weight"),
            ParamMap(o + "norm.norm.bias", r + "norm.bias"),
        ]
    maps += [ParamMap("decoder.weight", "decoder.weight"), ParamMap("decoder.bias", "decoder.bias")]
    po, pr = dict(ours.named_parameters()), dict(ref.named_parameters())
    for m in maps:  # final_act 'id' makes the output linear Sequential(Linear, Identity); else a bare Linear
        if m.ref not in pr and m.ref.replace("output_linear.0.", "output_linear.") in pr:
            m.ref = m.ref.replace("output_linear.0.", "output_linear.")
    missing_o = sorted(set(po) - {m.ours for m in maps})
    missing_r = sorted(set(pr) - {m.ref for m in maps})
    if missing_o or missing_r:
        raise RuntimeError(f"unmapped parameters: ours {missing_o}, reference {missing_r}")
    return maps


@torch.no_grad()
def copy_weights(ours: nn.Module, ref: nn.Module, maps: list[ParamMap]) -> None:
    po, pr = dict(ours.named_parameters()), dict(ref.named_parameters())
    for m in maps:
        src = m.to_ref(po[m.ours].detach())
        if src.numel() != pr[m.ref].numel():
            raise RuntimeError(f"{m.ours} {tuple(src.shape)} does not fit {m.ref} {tuple(pr[m.ref].shape)}")
        pr[m.ref].copy_(src.reshape(pr[m.ref].shape))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max(max |b|, tiny)."""
    dt = torch.complex128 if a.is_complex() or b.is_complex() else torch.float64
    a, b = a.detach().resolve_conj().to(dt), b.detach().resolve_conj().to(dt)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


# ---- dropout: where each network drops --------------------------------------------------------------
def dropout_kind(m: nn.Module) -> str | None:
    """'tied' (one mask per batch row and feature), 'elementwise', or None (not a dropout)."""
    if isinstance(m, TiedDropout):
        return "tied" if m.p > 0 else None
    if isinstance(m, nn.Dropout):
        return "elementwise" if m.p > 0 else None
    if type(m).__name__ == "DropoutNd":  # the reference's
        return ("tied" if m.tie else "elementwise") if m.p > 0 else None
    return None


def dropout_calls(model: nn.Module, x: torch.Tensor, L: int) -> list[dict]:
    """Every dropout applied in one training-mode forward, in call order: module name, block,
    kind, p, and the shape seen in (batch, length, features) order."""
    calls, handles = [], []
    for name, m in model.named_modules():
        kind = dropout_kind(m)
        if kind is None:
            continue

        def hook(mod, inp, out, name=name, kind=kind):
            s = tuple(inp[0].shape)
            blf = s if s[1] == L else (s[0], s[2], s[1])
            found = re.search(r"blocks\.(\d+)\.", name)
            calls.append({"module": name, "block": int(found.group(1)) if found else None, "kind": kind,
                          "p": float(mod.p), "shape": blf})
        handles.append(m.register_forward_hook(hook))
    was = model.training
    model.train()
    try:
        model(x)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return calls


class Replay(nn.Module):
    """A dropout whose mask comes from a shared generator, drawn in (batch, length, features) layout
    whatever layout the module sees: two networks that drop at the same places in the same order
    draw the same masks."""

    def __init__(self, p: float, tied: bool, L: int, gen: torch.Generator):
        super().__init__()
        self.p, self.tied, self.L, self.gen = p, tied, L, gen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        channels_first = x.shape[1] != self.L
        xt = x.transpose(1, 2) if channels_first else x  # (B L F)
        shape = (xt.shape[0], 1, xt.shape[2]) if self.tied else tuple(xt.shape)
        keep = torch.rand(shape, generator=self.gen, dtype=xt.dtype) >= self.p
        out = xt * keep.to(xt.dtype) * (1.0 / (1 - self.p))  # (B L F)
        return out.transpose(1, 2) if channels_first else out


def with_replay(model: nn.Module, L: int, gen: torch.Generator) -> nn.Module:
    """A copy of ``model`` with every active dropout replaced by ``Replay``."""
    model = copy.deepcopy(model)
    for name, m in list(model.named_modules()):
        for child_name, child in list(m.named_children()):
            kind = dropout_kind(child)
            if kind is not None:
                setattr(m, child_name, Replay(float(child.p), kind == "tied", L, gen))
    return model


# ---- the checks ----------------------------------------------------------------------------------
def forward_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, train: bool):
    model.train(train)
    model.zero_grad(set_to_none=True)
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.eval()
    return logits.detach(), grads


def compare_networks(ours: nn.Module, ref: nn.Module, maps: list[ParamMap], x: torch.Tensor, y: torch.Tensor,
                     tol: float, kernels: tuple[Callable, Callable] | None = None, replay_seed: int = 0) -> dict:
    """Weights of ``ours`` copied into ``ref``; then kernels, logits and gradients (dropout off),
    dropout sites and a replayed forward/backward (dropout on). Returns the rows of the table."""
    L = x.shape[1]
    copy_weights(ours, ref, maps)
    out: dict = {"params": [], "kernels": [], "dropout_sites": [], "ok": True}
    with torch.no_grad():
        if kernels is not None:
            for i, (ko, kr) in enumerate(zip(kernels[0](ours, L), kernels[1](ref, L))):
                e = rel_err(ko, kr)
                out["kernels"].append({"block": i, "shape_ours": tuple(ko.shape), "shape_ref": tuple(kr.shape),
                                       "rel_err": e, "agree": e <= tol and ko.shape == kr.shape})
    lo, go = forward_backward(ours, x, y, train=False)
    lr_, gr = forward_backward(ref, x, y, train=False)
    e = rel_err(lo, lr_)
    out["forward"] = {"rel_err": e, "agree": e <= tol}
    po = dict(ours.named_parameters())
    for m in maps:
        g_o = m.to_ref(go[m.ours]).reshape(gr[m.ref].shape)
        eg = rel_err(g_o, gr[m.ref])
        out["params"].append({"ours": m.ours, "ref": m.ref, "shape": tuple(po[m.ours].shape), "note": m.note,
                              "grad_rel_err": eg, "agree": eg <= tol})
    # dropout on: the sites, then the same masks through both
    so, sr = dropout_calls(ours, x, L), dropout_calls(ref, x, L)
    for k in range(max(len(so), len(sr))):
        a = so[k] if k < len(so) else None
        b = sr[k] if k < len(sr) else None
        same = a is not None and b is not None and all(a[f] == b[f] for f in ("block", "kind", "p", "shape"))
        out["dropout_sites"].append({"ours": a, "ref": b, "agree": same})
    gen_o, gen_r = torch.Generator().manual_seed(replay_seed), torch.Generator().manual_seed(replay_seed)
    lo, go = forward_backward(with_replay(ours, L, gen_o), x, y, train=True)
    lr_, gr = forward_backward(with_replay(ref, L, gen_r), x, y, train=True)
    e = rel_err(lo, lr_)
    eg = max(rel_err(m.to_ref(go[m.ours]).reshape(gr[m.ref].shape), gr[m.ref]) for m in maps)
    out["dropout_replay"] = {"forward_rel_err": e, "grad_rel_err_max": eg, "agree": e <= tol and eg <= tol}
    out["ok"] = (all(r["agree"] for r in out["params"]) and all(r["agree"] for r in out["kernels"])
                 and out["forward"]["agree"] and all(r["agree"] for r in out["dropout_sites"])
                 and out["dropout_replay"]["agree"])
    return out


def reference_hparams(ref: nn.Module, lr: float, weight_decay: float) -> dict[str, tuple[float, float]]:
    """(lr, weight decay) per reference parameter as the pipeline's train.py sets them: its hook
    (src/utils/optim_groups.py, bias_weight_decay=False, normalization_weight_decay=False) tags
    biases and norm parameters {"weight_decay": 0}; a tagged parameter's group is the optimizer's
    settings updated by its tag; untagged parameters get the optimizer's."""
    norms = (nn.LayerNorm, nn.BatchNorm1d, nn.Embedding)
    exempt = set()
    for mn, m in ref.named_modules():
        for pn, _ in m.named_parameters(recurse=False):
            if pn.endswith("bias") or isinstance(m, norms):
                exempt.add(f"{mn}.{pn}" if mn else pn)
    out = {}
    for name, p in ref.named_parameters():
        tag = {"weight_decay": 0.0} if name in exempt else getattr(p, "_optim", None)
        tag = tag or {}
        out[name] = (float(tag.get("lr", lr)), float(tag.get("weight_decay", weight_decay)))
    return out


def reference_optimizer(ref: nn.Module, lr: float, weight_decay: float, betas) -> torch.optim.AdamW:
    """AdamW grouped as the pipeline's train.py groups it (see ``reference_hparams``)."""
    hp = reference_hparams(ref, lr, weight_decay)
    groups: dict[tuple, list] = {}
    for name, p in ref.named_parameters():
        groups.setdefault(hp[name], []).append(p)
    return torch.optim.AdamW([{"params": ps, "lr": k[0], "weight_decay": k[1]} for k, ps in groups.items()],
                             lr=lr, weight_decay=weight_decay, betas=tuple(betas))


def compare_hparams(ours: nn.Module, ref: nn.Module, maps: list[ParamMap], cfg) -> list[dict]:
    o = cfg.optimizer
    ours_hp = {}
    for g in param_groups(ours, o.lr, o.weight_decay, bias_norm_weight_decay=bool(o.get("bias_norm_weight_decay", True))):
        for n in g["param_names"]:
            ours_hp[n] = (float(g["lr"]), float(g["weight_decay"]))
    ref_hp = reference_hparams(ref, REFERENCE["lr"], REFERENCE["weight_decay"])
    return [{"ours": m.ours, "ref": m.ref, "ours_lr_wd": ours_hp[m.ours], "ref_lr_wd": ref_hp[m.ref],
             "agree": all(math.isclose(a, b) for a, b in zip(ours_hp[m.ours], ref_hp[m.ref]))} for m in maps]


@torch.no_grad()
def compare_init(ours: nn.Module, ref: nn.Module, init: str, tol: float) -> list[dict]:
    """Fresh A and B of block 0 (before any copy): ours vs the conjugate of the reference's."""
    k = ref.blocks[0].s4.layer.kernel
    A_ref = -k.A_real.exp() - 1j * k.A_imag if k.real_transform == "exp" and k.imag_transform == "none" else None
    core = ours.blocks[0].core
    rows = []
    if A_ref is None:
        return rows
    # modes in order of |Im A| (the two sort the eigenvalues differently); B up to each mode's sign
    # (an eigenvector's phase: with C ~ N(0, 1) complex the kernels are equal in law)
    A_o = core.eigenvalues().conj()
    io, ir = A_o.imag.abs().argsort(-1), A_ref.imag.abs().argsort(-1)
    A_o, A_r = A_o.gather(-1, io), A_ref.gather(-1, ir)
    rand = init == "rand"
    e = rel_err(A_o, A_r)
    rows.append({"what": "A (n_ssm, N/2)", "rel_err": e, "agree": None if rand else e <= tol,
                 "note": "random imaginary parts: equal in law only" if rand else ""})
    B_o = torch.view_as_complex(core.B.contiguous()).conj().gather(-1, io)
    B_r = torch.view_as_complex(k.B.contiguous())[0].gather(-1, ir)
    if hasattr(core, "P"):
        # S4: eigenvectors of a complex spectrum, each up to a phase; the clip of Im B acts in the
        # phase each implementation's eigh returns, so compare B and P as given (same LAPACK call)
        # and up to phase (|.|)
        P_o = torch.view_as_complex(core.P.contiguous()).conj().gather(-1, io[None].expand(core.P.shape[0], -1, -1))
        P_r = torch.view_as_complex(k.P.contiguous()).gather(-1, ir[None].expand(k.P.shape[0], -1, -1))
        for what, o_, r_ in (("B", B_o, B_r), ("P", P_o, P_r)):
            e_abs, e = rel_err(o_.abs(), r_.abs()), rel_err(o_, r_)
            rows.append({"what": f"{what} (n_ssm, N/2), |{what}|", "rel_err": e_abs, "agree": e_abs <= tol,
                         "note": f"as given: rel err {e:.1e}"})
    else:
        e = rel_err(torch.view_as_real(B_o).abs(), torch.view_as_real(B_r).abs())
        rows.append({"what": "B (n_ssm, N/2), up to sign", "rel_err": e, "agree": e <= tol, "note": ""})
    dt_o = core.log_dt.exp() if core.dt_transform == "exp" else F.softplus(core.log_dt)
    rows.append({"what": "dt range", "ours": [float(dt_o.min()), float(dt_o.max())],
                 "agree": bool(dt_o.min() >= REFERENCE["dt_min"] * 0.999 and dt_o.max() <= REFERENCE["dt_max"] * 1.001),
                 "note": "log-uniform in [dt_min, dt_max] both"})
    return rows


@torch.no_grad()
def compare_c_tilde(ours: nn.Module, ref: nn.Module, L: int, tol: float, seed: int) -> list[dict]:
    """S4: C~ = C (I - Abar^L) both ways, block 0, after the weight copy. A fresh complex normal C
    goes into ours' ``c_tilde`` and, conjugated, into a copy of the reference kernel reset to
    'no length yet', whose first forward replaces C by C~ in place (``_setup_C``)."""
    core = ours.blocks[0].core
    if not hasattr(core, "c_tilde"):
        return []
    k = copy.deepcopy(ref.blocks[0].s4.layer.kernel)
    g = torch.Generator().manual_seed(seed)
    C = torch.randn(core.C.shape[:-1], dtype=torch.complex64, generator=g)  # (dC H M)
    ours_t = core.c_tilde(C, L)  # (dC H M)
    k.C.copy_(_conj_pairs(torch.view_as_real(C)).reshape(k.C.shape))
    k.l_kernel.fill_(0)
    k(L=L)  # the reference's first forward at length L: C -> C~ in place
    ref_t = torch.view_as_complex(k.C.contiguous()).conj()  # (dC H M)
    e = rel_err(ours_t, ref_t)
    return [{"what": f"C~ = C (I - Abar^L), L = {L}", "rel_err": e, "agree": e <= tol,
             "note": "ours: c_tilde; the reference: _setup_C at its first forward"}]


def check_init(s4, init: str, a) -> dict:
    torch.manual_seed(a.seed)
    ours, cfg = build_ours(init, a.override)
    ref = ReferenceNetwork(s4, init)
    res = {"init": init if init != S4 else "s4 (S4, DPLR, HiPPO-LegS)"}
    res["init_rows"] = compare_init(ours, ref, init, a.tol)
    maps = parameter_map(ours, ref)
    res["optimizer"] = compare_hparams(ours, ref, maps, cfg)
    g = torch.Generator().manual_seed(a.seed)
    x = torch.randn(a.batch, a.L, REFERENCE["d_input"], generator=g)
    y = torch.randint(0, REFERENCE["d_output"], (a.batch,), generator=g)
    ref.attune(a.L)  # S4: the copied C is C~ at length L (no-op for S4D)
    res.update(compare_networks(ours, ref, maps, x, y, a.tol, (our_kernels, lambda m, L: m.kernels(L)), a.seed))
    res["init_rows"] += compare_c_tilde(ours, ref, a.L, a.tol, a.seed)
    res["ok"] = (res["ok"] and all(r["agree"] for r in res["optimizer"])
                 and all(r["agree"] is not False for r in res["init_rows"]))
    return res


def print_report(res: dict) -> None:
    ok = lambda b: "agree" if b else "DIFFER"  # noqa: E731
    print(f"\n=== init {res['init']}: {'PARITY' if res['ok'] else 'DIFFERENCES FOUND'}")
    print(f"| {'ours':24s} | {'reference':36s} | {'shape':14s} | grad rel err | (lr, wd) ours / ref | |")
    print(f"|{'-' * 26}|{'-' * 38}|{'-' * 16}|{'-' * 14}|{'-' * 26}|{'-' * 8}|")
    for r, h in zip(res["params"], res["optimizer"]):
        print(f"| {r['ours']:24s} | {r['ref']:36s} | {str(r['shape']):14s} | {r['grad_rel_err']:12.2e} | "
              f"{h['ours_lr_wd']!s:>11s} {h['ref_lr_wd']!s:>12s} | {ok(r['agree'] and h['agree']):6s} |")
    for r in res["kernels"]:
        print(f"kernel block {r['block']}: ours {r['shape_ours']} ref {r['shape_ref']} rel err {r['rel_err']:.2e} "
              f"{ok(r['agree'])}")
    print(f"forward (dropout off): rel err {res['forward']['rel_err']:.2e} {ok(res['forward']['agree'])}")
    print("dropout sites (call order; shape as (batch, length, features)):")
    for k, r in enumerate(res["dropout_sites"]):
        a, b = r["ours"], r["ref"]
        fa = f"{a['module']} {a['kind']} p={a['p']} {a['shape']}" if a else "-"
        fb = f"{b['module']} {b['kind']} p={b['p']} {b['shape']}" if b else "-"
        print(f"  {k:2d} ours: {fa:52s} ref: {fb:58s} {ok(r['agree'])}")
    rp = res["dropout_replay"]
    print(f"dropout on, same masks replayed: logits rel err {rp['forward_rel_err']:.2e}, "
          f"grads max rel err {rp['grad_rel_err_max']:.2e} {ok(rp['agree'])}")
    for r in res["init_rows"]:
        extra = f"rel err {r['rel_err']:.2e}" if "rel_err" in r else f"ours {r['ours']}"
        verdict = "n/a" if r["agree"] is None else ok(r["agree"])
        print(f"fresh init {r['what']}: {extra} {verdict} {r.get('note', '')}")


# ---- training the reference on our loaders ----------------------------------------------------------
def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """transformers.get_cosine_schedule_with_warmup (num_cycles 0.5), the reference's cosine_warmup."""
    def f(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * 0.5 * progress)))
    return f


@torch.no_grad()
def accuracy(model: nn.Module, loader, device) -> float:
    model.eval()
    correct = n = 0
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        correct += int((model(xb).argmax(-1) == yb).sum())
        n += len(yb)
    return correct / max(1, n)


def train_reference(s4, a) -> dict:
    """Train ``ReferenceNetwork`` with our protocol's data, epochs, batch size and seed."""
    from ssm_cli.data import load_dataset
    from ssm_cli.train.loaders import make_loader
    from omegaconf import OmegaConf

    _, cfg = build_ours(a.init, a.override)
    tc = cfg.trainer
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    torch.set_float32_matmul_precision(tc.matmul_precision)
    data = load_dataset(cfg.dataset.name, a.data, **OmegaConf.to_container(cfg.dataset.options, resolve=True))
    dev = device if device.type == "cuda" else None
    seed = int(a.seed if a.seed is not None else (cfg.protocol_seed if cfg.get("protocol_seed") is not None else 0))
    torch.manual_seed(seed)
    model = ReferenceNetwork(s4, a.init).to(device)
    train = make_loader(data.train, tc.batch_size, True, dev, 0, seed)
    evals = {n: make_loader(ds, tc.eval_batch_size or tc.batch_size, False, dev, 0)
             for n, ds in (("val", data.val), ("test", data.test))}
    epochs = a.epochs or int(tc.epochs)
    steps = len(train)
    if a.limit_train_batches:
        steps = min(steps, a.limit_train_batches)
    opt = reference_optimizer(model, REFERENCE["lr"], REFERENCE["weight_decay"], REFERENCE["betas"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(int(cfg.scheduler.warmup_steps), steps * epochs))
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, n, total = time.perf_counter(), 0, torch.zeros((), device=device)
        for i, (xb, yb) in enumerate(train):
            if i >= steps:
                break
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach() * len(yb)
            n += len(yb)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        row = {"epoch": epoch, "train_loss": float(total) / max(1, n), "train_samples_per_s": n / dt,
               "val_acc": accuracy(model, evals["val"], device), "test_acc": accuracy(model, evals["test"], device)}
        history.append(row)
        print(f"epoch {epoch:3d}  loss {row['train_loss']:.4f}  val {row['val_acc']:.4f}  test {row['test_acc']:.4f}  "
              f"{row['train_samples_per_s']:.0f} samples/s", flush=True)
    best = max(history, key=lambda r: (r["val_acc"], -r["epoch"]))  # first epoch of the best val
    return {"impl": "reference", "init": a.init, "seed": seed, "epochs": history, "best_epoch": best["epoch"],
            "best_val_acc": best["val_acc"], "test_acc": best["test_acc"], "n_train": len(data.train),
            "n_val": len(data.val), "n_test": len(data.test), "batch_size": int(tc.batch_size),
            "steps_per_epoch": steps, "schedule": {"warmup_steps": int(cfg.scheduler.warmup_steps),
                                                   "total_steps": steps * epochs, "interval": "step"},
            "optimizer_groups": sorted({str(k) for k in reference_hparams(model, REFERENCE["lr"],
                                                                          REFERENCE["weight_decay"]).values()}),
            "matmul_precision": tc.matmul_precision, "device": device_name(device)}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--reference", default=".ref/s4.py", help="path of the reference s4.py (state-spaces/s4)")
    p.add_argument("--model", nargs="*", default=None, choices=MODELS,
                   help="networks to check: s4d (the S4D inits of --init) and/or s4 (the S4 (DPLR) network, "
                        "our model=s4); default: both, or s4d alone when --init is given")
    p.add_argument("--init", nargs="*", default=None, help=f"S4D inits to check (default all: {' '.join(INITS)}); "
                   "with --train exactly one network (one init, or --model s4)")
    p.add_argument("--override", nargs="*", default=[], help="extra overrides of our config (Hydra syntax)")
    p.add_argument("--batch", type=int, default=3, help="check: batch of random inputs")
    p.add_argument("--L", type=int, default=96, help="check: sequence length (must differ from the feature sizes)")
    p.add_argument("--tol", type=float, default=2e-4, help="check: max relative error that counts as agree")
    p.add_argument("--seed", type=int, default=None,
                   help="check: seed of the weights and inputs (default 0); --train: the run's seed "
                        "(default: the protocol's, as ssm run preset=short: 1111 for sCIFAR)")
    p.add_argument("--train", action="store_true", help="train the reference on real sCIFAR instead of checking")
    p.add_argument("--data", default="data", help="--train: data dir with cifar10/ (as ssm run's data_dir)")
    p.add_argument("--epochs", type=int, default=0, help="--train: epochs (0: our protocol's, preset=short: 10)")
    p.add_argument("--limit-train-batches", type=int, default=0, help="--train: batches per epoch (0: all)")
    p.add_argument("--device", default="auto", help="--train: auto | cuda | cpu")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    if not os.path.isfile(a.reference):
        print(f"error: reference file {a.reference!r} not found; pass --reference PATH (state-spaces/s4 "
              "models/s4/s4.py)", file=sys.stderr)
        return 2
    models = a.model or (["s4d"] if a.init else list(MODELS))
    inits = a.init or list(INITS)
    bad = [i for i in inits if i not in INITS]
    if bad:
        print(f"error: unknown init {bad[0]!r}; valid: {', '.join(INITS)}", file=sys.stderr)
        return 2
    inits = (inits if "s4d" in models else []) + ([S4] if S4 in models else [])
    s4 = load_reference(a.reference)
    meta = {"reference": os.path.abspath(a.reference), "reference_sha256": file_sha256(a.reference),
            "torch": torch.__version__, "python": platform.python_version(), "args": vars(a)}
    if a.train:
        if len(inits) != 1:
            print("error: --train takes exactly one network: one --init, or --model s4", file=sys.stderr)
            return 2
        a.init = inits[0]
        out = {**meta, **train_reference(s4, a)}
        print(f"test acc at the best val epoch ({out['best_epoch']}): {out['test_acc']:.4f}")
        status = 0
    else:
        a.seed = 0 if a.seed is None else a.seed
        torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
        t0 = time.perf_counter()
        results = [check_init(s4, init, a) for init in inits]
        for r in results:
            print_report(r)
        ok = all(r["ok"] for r in results)
        print(f"\n{'PARITY' if ok else 'DIFFERENCES FOUND'} for {', '.join(r['init'] for r in results)} "
              f"({time.perf_counter() - t0:.1f} s, tolerance {a.tol:g})")
        out = {**meta, "ok": ok, "results": results}
        status = 0 if ok else 1
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2, default=str)
        print(f"wrote {a.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
