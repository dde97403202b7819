"""Training throughput of the sCIFAR ablation model: ours vs the authors' reference, side by side.

    python benchmarks/speed.py --reference .ref/s4.py --json speed.json          # fp32, both models
    python benchmarks/speed.py --reference .ref/s4.py --bf16 --compile --json speed.json
    python benchmarks/speed.py --no-reference --device cpu --L 64 --batch 4 --steps 2   # tiny, CPU

The model is the S4D sCIFAR ablation network (docs/papers.md §2): Linear(3 -> 128) encoder, 4 residual blocks
[S4D core (N=64, S4D-Inv, ZOH, bidirectional) -> dropout 0.1 -> GELU -> tied dropout 0.1 ->
Linear(128 -> 128) -> tied dropout 0.1 -> + residual -> post-norm LayerNorm] (``--dropout-sites
single``: the tied dropout after the GELU only), mean pooling over L=1024, Linear(128 -> 10) decoder; AdamW with
the SSM groups (lr 0.001, wd 0 for dt, A, B; lr 0.01, wd 0.01 for everything else).

* ours:       ``ssm_cli.layers.SequenceModel`` with the options of conf/model/s4d.yaml + the sCIFAR
              protocol (conf/protocol/scifar.yaml), groups from ``ssm_cli.layers.param_groups``.
              ``--model NAME`` (e.g. mega_ema, gss, sgconv, liquid_s4, dlr): the same backbone around
              core NAME with conf/model/NAME.yaml's core options (bidirectional, SSM lr as above).
* reference:  the standalone ``s4.py`` of state-spaces/s4, imported from ``--reference PATH`` with
              importlib (never copied into the repository), ``S4Block(mode='diag', init='diag-inv')``
              inside the same tiny backbone (``RefModel`` below), groups built from the ``_optim``
              tags the way the authors' example.py does. Without its CUDA/pykeops extensions its
              kernel is the naive Vandermonde product: that is the configuration users get, kept.

Timing: random data already on the device, ``--warmup`` untimed steps per variant, then ``--repeats``
rounds; in each round every variant runs ``--steps`` timed training steps (zero_grad, forward,
cross-entropy, backward, AdamW step), bracketed by CUDA events (perf_counter on CPU). The order of
the variants alternates between rounds so that they share the machine's noise. Reported: median
samples/s over rounds, the ratio to the reference, and peak memory (CUDA: growth of
``torch.cuda.max_memory_allocated`` over the memory held before the variant's round, plus the
variant's own parameters and optimizer state; reset between variants).

Variants of ours (flags): ``--bf16`` (autocast bfloat16; our cores switch autocast off and keep the
kernel and FFT in float32), ``--compile`` (``torch.compile`` of the model; a failure is reported,
not fatal), both together when both are given, ``--fused`` (AdamW(fused=True)), ``--block T ...``
(our Vandermonde kernel with block length T, e.g. 1024 = one block). ``--tf32`` allows TF32 matmuls
for every variant (global switch). ``--data DIR --epochs N`` additionally trains ours and the
reference on real sCIFAR and prints the validation accuracy per epoch side by side.

Output: a table on stdout; ``--json PATH`` writes every figure plus device and versions.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from ssm_cli.layers import SequenceModel, param_groups  # noqa: E402
from ssm_cli.train.optim import cosine_with_warmup  # noqa: E402

MiB = 2 ** 20


# ---- models ------------------------------------------------------------------------------------
def model_core_options(name: str, a: argparse.Namespace) -> dict:
    """The core options of conf/model/<name>.yaml with the sCIFAR protocol's (bidirectional, SSM lr);
    a null l_max is the benchmark's L (as the runner gives it the data's length)."""
    from omegaconf import OmegaConf

    from ssm_cli.config import CONF_DIR
    from ssm_cli.model import BACKBONE_KEYS

    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.exists():
        raise SystemExit(f"error: no model {name!r} (conf/model/{name}.yaml)")
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    opts = {k: v for k, v in cfg.items() if k not in BACKBONE_KEYS}
    opts.update(bidirectional=True, lr=a.ssm_lr)
    if "l_max" in opts and opts["l_max"] is None:
        opts["l_max"] = a.L
    return opts


def build_ours(a: argparse.Namespace, block: int | None = None, compiled: bool = False) -> nn.Module:
    """Our sCIFAR ablation model (conf/model/s4d.yaml + conf/protocol/scifar.yaml); ``block``: the
    Vandermonde block length (None: the kernel's automatic choice). ``--model NAME`` other than
    s4d: the same backbone around core NAME with the options of conf/model/NAME.yaml."""
    if a.model != "s4d":
        return SequenceModel(
            a.d_input, a.classes, d_model=a.d_model, n_layers=a.n_layers, core=a.model, d_state=a.d_state,
            core_options=model_core_options(a.model, a), norm="layer", prenorm=False, dropout=a.dropout,
            tie_dropout=True, activation="gelu", final_act="identity", pool="mean",
            dropout_sites=a.dropout_sites, compiled=compiled)
    return SequenceModel(
        a.d_input, a.classes, d_model=a.d_model, n_layers=a.n_layers, core="s4d", d_state=a.d_state,
        core_options=dict(init="inv", disc="zoh", bidirectional=True, n_ssm=a.n_ssm or None, lr=a.ssm_lr,
                          block=block, dt_transform="softplus"),
        norm="layer", prenorm=False, dropout=a.dropout, tie_dropout=True, activation="gelu",
        final_act="identity", pool="mean", dropout_sites=a.dropout_sites, compiled=compiled)


def load_reference(path: str):
    """Import the reference ``s4.py`` from ``path`` as module ``s4_reference``."""
    spec = importlib.util.spec_from_file_location("s4_reference", os.path.abspath(path))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["s4_reference"] = mod
    spec.loader.exec_module(mod)
    return mod


class RefModel(nn.Module):
    """The same backbone around the reference's ``S4Block``: encoder -> blocks (post-norm) -> mean -> decoder.

    ``S4Block(dropout=p)`` hands ``p`` to its inner ``FFTConv`` as well (a dropout before the GELU).
    ``sites="reference"``: as the authors' training pipeline, that inner dropout elementwise and a
    tied dropout on the residual branch (three per block, as ours by default; benchmarks/parity.py
    checks the network); ``"single"``: the inner one removed, no residual one (ours with
    ``dropout_sites=single``): core -> GELU -> one tied dropout -> Linear -> + x -> LayerNorm.
    """

    def __init__(self, s4, a: argparse.Namespace, sites: str = "reference"):
        super().__init__()
        H = a.d_model
        self.encoder = nn.Linear(a.d_input, H)
        self.blocks = nn.ModuleList()
        self.res_drops = nn.ModuleList()
        self.norms = nn.ModuleList()
        for _ in range(a.n_layers):
            block = s4.S4Block(
                H, dropout=a.dropout, tie_dropout=True, transposed=False, final_act="id",
                mode="diag", init="diag-inv", d_state=a.d_state, disc="zoh", bidirectional=True,
                activation="gelu", n_ssm=a.n_ssm or None, dt_min=0.001, dt_max=0.1,
                lr={"dt": a.ssm_lr, "A": a.ssm_lr, "B": a.ssm_lr}, wd=0.0, dt_transform="softplus")
            reference = sites == "reference" and a.dropout > 0
            block.layer.drop = nn.Dropout(a.dropout) if reference else nn.Identity()
            self.res_drops.append(s4.DropoutNd(a.dropout, transposed=False) if reference else nn.Identity())
            self.blocks.append(block)
            self.norms.append(nn.LayerNorm(H))
        self.decoder = nn.Linear(H, a.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)  # (B L H)
        for block, drop, norm in zip(self.blocks, self.res_drops, self.norms):
            z, _ = block(h)  # (B L H)
            h = norm(h + drop(z))  # (B L H)
        return self.decoder(h.mean(1))  # (B classes)


def reference_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups as the authors' train.py builds them: biases and norm parameters tagged with
    weight decay 0 (its optimizer hook), untagged params in the default group, then one group per
    distinct ``_optim`` dict (an empty dict, as C gets, means the defaults)."""
    exempt = {f"{mn}.{pn}" if mn else pn for mn, m in model.named_modules()
              for pn, _ in m.named_parameters(recurse=False) if pn.endswith("bias") or isinstance(m, nn.LayerNorm)}
    named = list(model.named_parameters())
    tags = {n: ({"weight_decay": 0.0} if n in exempt else getattr(p, "_optim", None)) for n, p in named}
    groups = [{"params": [p for n, p in named if tags[n] is None], "lr": lr, "weight_decay": weight_decay}]
    hps = [dict(s) for s in sorted(dict.fromkeys(frozenset(t.items()) for t in tags.values() if t is not None),
                                   key=lambda s: sorted(s))]
    for hp in hps:
        groups.append({"params": [p for n, p in named if tags[n] == hp],
                       "lr": hp.get("lr", lr), "weight_decay": hp.get("weight_decay", weight_decay)})
    return groups


def summarize_groups(groups: list[dict]) -> list[dict]:
    return [{"lr": g["lr"], "weight_decay": g["weight_decay"], "n_tensors": len(g["params"]),
             "n_params": int(sum(p.numel() for p in g["params"]))} for g in groups]


def param_breakdown(model: nn.Module) -> dict:
    """Parameter count by the last component of the name (e.g. 'weight', 'A_real', 'inv_dt')."""
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        parts = [s for s in name.split(".") if not s.isdigit()]
        key = ".".join(parts[-2:]) if parts[-1] in ("weight", "bias") else parts[-1]
        out[key] = out.get(key, 0) + p.numel()
    return out


# ---- variants ----------------------------------------------------------------------------------
@dataclass
class Variant:
    """One model + optimizer configuration to time."""

    name: str
    impl: str  # "ours" | "reference"
    bf16: bool = False
    compile: bool = False
    fused: bool = False
    block: int | None = None
    graph: bool = False  # capture the whole step in a CUDA graph (what `ssm run` does on a GPU)
    compiled: bool = False  # torch.compile of each block's real-valued tail
    model: nn.Module | None = None
    runner: nn.Module | None = None  # model or torch.compile(model)
    opt: torch.optim.Optimizer | None = None
    groups: list = field(default_factory=list)
    times: list = field(default_factory=list)
    peaks: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    warmup_s: float = 0.0
    error: str | None = None

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One training step; returns the loss (not synchronised)."""
        if self.graph:
            return self._graph_step(x, y)
        return self._eager_step(x, y)

    def _graph_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """3 eager steps on a side stream, then capture once; later steps replay."""
        warm = getattr(self, "_warm", 0)
        if warm < 3:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                loss = self._eager_step(x, y)
            torch.cuda.current_stream().wait_stream(s)
            self._warm = warm + 1
            return loss
        if getattr(self, "_graph", None) is None:
            self._x, self._y = x.clone(), y.clone()
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._loss = self._eager_step(self._x, self._y, cache=False)
        self._x.copy_(x)
        self._y.copy_(y)
        self._graph.replay()
        return self._loss

    def _eager_step(self, x: torch.Tensor, y: torch.Tensor, cache: bool = True) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=cache):
            logits = self.runner(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def static_bytes(self) -> int:
        """Bytes of the parameters and the optimizer state (memory held between steps)."""
        n = sum(p.numel() * p.element_size() for p in self.model.parameters())
        for st in self.opt.state.values():
            n += sum(t.numel() * t.element_size() for t in st.values() if torch.is_tensor(t))
        return n


def make_variant(v: Variant, a: argparse.Namespace, device: torch.device, s4=None) -> Variant:
    torch.manual_seed(a.seed)
    if v.impl == "ours":
        v.model = build_ours(a, v.block, v.compiled).to(device)
        v.groups = param_groups(v.model, a.lr, a.weight_decay)
        v.groups = [{k: g[k] for k in ("params", "lr", "weight_decay")} for g in v.groups]
    else:
        v.model = RefModel(s4, a, sites=a.dropout_sites).to(device)
        v.groups = reference_groups(v.model, a.lr, a.weight_decay)
    kw = {"fused": True} if v.fused else {}
    if v.graph:  # the captured AdamW step reads tensor learning rates
        for g in v.groups:
            g["lr"] = torch.tensor(float(g.get("lr", a.lr)), device=device)
        kw = {"fused": True, "capturable": True}
    v.opt = torch.optim.AdamW(v.groups, lr=a.lr, weight_decay=a.weight_decay, **kw)
    v.runner = torch.compile(v.model, mode=a.compile_mode) if v.compile else v.model
    v.model.train()
    return v


def variants_from_args(a: argparse.Namespace) -> list[Variant]:
    if a.no_ours:
        return [Variant("reference", "reference")]
    out = [Variant("ours", "ours")]
    if not a.no_reference:
        out.append(Variant("reference", "reference"))
    if a.bf16:
        out.append(Variant("ours+bf16", "ours", bf16=True))
    if a.compile:
        out.append(Variant("ours+compile", "ours", compile=True))
    if a.bf16 and a.compile:
        out.append(Variant("ours+compile+bf16", "ours", bf16=True, compile=True))
    if a.fused:
        out.append(Variant("ours+fused", "ours", fused=True))
    if a.graph:
        out.append(Variant("ours+graph", "ours", graph=True))
        if a.bf16:
            out.append(Variant("ours+graph+bf16", "ours", graph=True, bf16=True))
        for T in a.block or []:
            out.append(Variant(f"ours+graph+block{T}", "ours", graph=True, block=T))
        if a.compiled:
            out.append(Variant("ours+graph+compile_post", "ours", graph=True, compiled=True))
            T = (a.block or [None])[0]
            out.append(Variant(f"ours+graph+bf16+compile_post{'+block%d' % T if T else ''}", "ours", graph=True,
                               bf16=True, compiled=True, block=T))
        if not a.no_reference:
            out.append(Variant("reference+graph", "reference", graph=True))
    for T in a.block or []:
        out.append(Variant(f"ours+block{T}", "ours", block=T))
    return out


# ---- timing ------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_round(v: Variant, x, y, steps: int, device: torch.device) -> None:
    """``steps`` training steps of ``v``; appends seconds, peak bytes and the last loss to ``v``."""
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            loss = v.step(x, y)
        end.record()
        end.synchronize()
        v.times.append(start.elapsed_time(end) / 1000)
        v.peaks.append(torch.cuda.max_memory_allocated(device) - base + v.static_bytes())
    else:
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = v.step(x, y)
        v.times.append(time.perf_counter() - t0)
    v.losses.append(float(loss))


def benchmark(variants: list[Variant], a: argparse.Namespace, device: torch.device) -> None:
    """Warm up every variant (compile happens here), then alternate timed rounds."""
    g = torch.Generator(device="cpu").manual_seed(a.seed)
    x = torch.randn(a.batch, a.L, a.d_input, generator=g).to(device)
    y = torch.randint(0, a.classes, (a.batch,), generator=g).to(device)
    for v in variants:
        try:
            sync(device)
            if device.type == "cuda":  # a CUDA graph allocates its memory pool once, at capture
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            t0 = time.perf_counter()
            for _ in range(a.warmup):
                v.step(x, y)
            sync(device)
            v.warmup_s = time.perf_counter() - t0
            if device.type == "cuda":
                v.peaks.append(torch.cuda.max_memory_allocated(device) - base + v.static_bytes())
        except Exception as err:  # e.g. torch.compile failing on complex ops: report, go on
            v.error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            if a.verbose:
                traceback.print_exc()
            v.runner = v.opt = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
    live = [v for v in variants if v.error is None]
    for r in range(a.repeats):
        for v in (live if r % 2 == 0 else live[::-1]):
            timed_round(v, x, y, a.steps, device)


# ---- optional: real sCIFAR, accuracy per epoch ---------------------------------------------------
def train_on_data(variants: list[Variant], a: argparse.Namespace, device: torch.device) -> dict:
    """Train fresh copies of ours (fp32, or bf16 with --bf16) and the reference on real sCIFAR for
    ``--epochs``, same batches in the same order, cosine schedule of the protocol (1 warmup epoch over
    ``--schedule-epochs``); returns per-epoch validation accuracy, loss and training samples/s."""
    from ssm_cli.data import load_dataset
    from ssm_cli.train.loaders import TensorBatches, dataset_tensors

    bundle = load_dataset("scifar", a.data)
    xs, ys = dataset_tensors(bundle.train)
    xv, yv = dataset_tensors(bundle.val)
    if a.train_limit:
        xs, ys = xs[:a.train_limit], ys[:a.train_limit]
    xs, ys, xv, yv = xs.to(device), ys.to(device), xv.to(device), yv.to(device)
    steps_per_epoch = math.ceil(len(xs) / a.batch)
    graph = a.graph and device.type == "cuda"
    pairs = [] if a.no_ours else [Variant("ours" + ("+graph" if graph else "") + ("+bf16" if a.bf16 else ""), "ours",
                                          bf16=a.bf16, graph=graph)]
    if not a.no_reference:
        pairs.append(Variant("reference", "reference"))
    s4 = load_reference(a.reference) if not a.no_reference else None
    for v in pairs:
        make_variant(v, a, device, s4)
        v.sched = cosine_with_warmup(v.opt, steps_per_epoch, a.schedule_epochs * steps_per_epoch)
        v.batches = TensorBatches(xs, ys, a.batch, shuffle=True, seed=a.seed)
        v.history = []
    for epoch in range(1, a.epochs + 1):
        for v in pairs:
            v.model.train()
            sync(device)
            t0, n, total = time.perf_counter(), 0, 0.0
            for xb, yb in v.batches:
                total = total + v.step(xb, yb).detach() * len(xb)  # summed on the device: no sync per step
                v.sched.step()
                n += len(xb)
            sync(device)
            dt = time.perf_counter() - t0
            total = float(total)
            acc = evaluate(v, xv, yv, a.eval_batch)
            v.history.append({"epoch": epoch, "train_loss": total / n, "val_acc": acc, "train_samples_per_s": n / dt})
        row = "  ".join(f"{v.name}: val acc {v.history[-1]['val_acc']:.4f} loss {v.history[-1]['train_loss']:.4f} "
                        f"({v.history[-1]['train_samples_per_s']:.0f} samples/s)" for v in pairs)
        print(f"epoch {epoch:3d}  {row}", flush=True)
    return {"n_train": len(xs), "n_val": len(xv), "steps_per_epoch": steps_per_epoch,
            "epochs": {v.name: v.history for v in pairs}}


@torch.no_grad()
def evaluate(v: Variant, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    v.model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=v.bf16):
            correct += int((v.model(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum())
    v.model.train()
    return correct / len(x)


# ---- report ------------------------------------------------------------------------------------
def report(variants: list[Variant], a: argparse.Namespace, device: torch.device, params: dict) -> dict:
    ref = next((v for v in variants if v.impl == "reference" and v.error is None), None)
    ref_sps = statistics.median(a.batch * a.steps / t for t in ref.times) if ref else None
    rows = []
    for v in variants:
        r = {"name": v.name, "impl": v.impl, "bf16": v.bf16, "compile": v.compile, "fused": v.fused, "block": v.block,
             "error": v.error, "warmup_s": round(v.warmup_s, 3)}
        if v.error is None:
            sps = [a.batch * a.steps / t for t in v.times]
            r.update({"samples_per_s": statistics.median(sps), "samples_per_s_all": sps,
                      "step_ms": 1000 * statistics.median(v.times) / a.steps,
                      "ratio_to_reference": statistics.median(sps) / ref_sps if ref_sps else None,
                      "peak_mem_MiB": max(v.peaks) / MiB if v.peaks else None,
                      "final_loss": v.losses[-1]})
        rows.append(r)
    print()
    print(f"device {device_name(device)} | torch {torch.__version__} | batch {a.batch} L {a.L} H {a.d_model} "
          f"N {a.d_state} layers {a.n_layers} | {a.steps} steps x {a.repeats} rounds, {a.warmup} warm-up")
    for name, p in params.items():
        print(f"  params {name:10s} {p['total']:>9,d}  groups " +
              ", ".join(f"[lr {g['lr']:g} wd {g['weight_decay']:g}: {g['n_params']:,}]" for g in p["groups"]))
    print()
    print(f"| {'variant':18s} | {'samples/s':>10s} | {'step ms':>8s} | {'vs ref':>6s} | {'peak MiB':>8s} | {'warm-up s':>9s} |")
    print(f"|{'-' * 20}|{'-' * 12}:|{'-' * 9}:|{'-' * 7}:|{'-' * 9}:|{'-' * 10}:|")
    for r in rows:
        if r["error"]:
            print(f"| {r['name']:18s} | failed: {r['error'][:120]}")
            continue
        ratio = f"{r['ratio_to_reference']:.2f}x" if r["ratio_to_reference"] else "-"
        peak = f"{r['peak_mem_MiB']:.0f}" if r["peak_mem_MiB"] is not None else "-"
        print(f"| {r['name']:18s} | {r['samples_per_s']:10.1f} | {r['step_ms']:8.2f} | {ratio:>6s} | {peak:>8s} | "
              f"{r['warmup_s']:9.2f} |")
    return {"variants": rows}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--reference", default=".ref/s4.py", help="path of the reference s4.py (state-spaces/s4)")
    p.add_argument("--no-reference", action="store_true", help="time ours only (no reference file needed)")
    p.add_argument("--no-ours", action="store_true",
                   help="the reference only (e.g. several processes at once: the reference's grid sharing a GPU)")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu | cuda:1 ...")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--L", type=int, default=1024, help="sequence length of the random data")
    p.add_argument("--d-input", type=int, default=3)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--model", default="s4d",
                   help="our model: a conf/model/ name (s4d, s4, dss, mega_ema, gss, sgconv, liquid_s4, dlr...); "
                        "the reference is always the authors' S4D")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--d-state", type=int, default=64)
    p.add_argument("--n-ssm", type=int, default=1,
                   help="copies of (A, B) per layer, both models (1 = conf/model/s4d.yaml; 0 = one per channel)")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--ssm-lr", type=float, default=0.001, help="lr of dt, A, B (weight decay 0)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per variant (compilation included)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--repeats", type=int, default=5, help="rounds; variants alternate order each round")
    p.add_argument("--bf16", action="store_true", help="add ours with bfloat16 autocast")
    p.add_argument("--compile", action="store_true", help="add ours under torch.compile (failure is reported)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    p.add_argument("--fused", action="store_true", help="add ours with AdamW(fused=True)")
    p.add_argument("--compiled", "--compile-post", dest="compiled", action="store_true",
                   help="with --graph: add ours with torch.compile of each block's real-valued tail")
    p.add_argument("--graph", action="store_true",
                   help="add ours (and the reference) with the whole step captured in a CUDA graph (CUDA only)")
    p.add_argument("--block", type=int, nargs="*", default=None, metavar="T",
                   help="add ours with Vandermonde block length T (e.g. --block 1024: one block, no J table)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (all variants, global)")
    p.add_argument("--dropout-sites", default="reference", choices=("reference", "single"),
                   help="both models: three dropouts per block as the authors' pipeline, or our single one")
    p.add_argument("--data", default=None, help="data dir with cifar10/: also train on real sCIFAR")
    p.add_argument("--epochs", type=int, default=1, help="epochs of --data training")
    p.add_argument("--schedule-epochs", type=int, default=100, help="length of the cosine schedule (epochs)")
    p.add_argument("--train-limit", type=int, default=0, help="use only the first N training images (0 = all)")
    p.add_argument("--eval-batch", type=int, default=250)
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--json", default=None, help="write every figure to this JSON file")
    p.add_argument("--verbose", action="store_true", help="print tracebacks of failed variants")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    if a.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if a.no_ours and a.no_reference:
        print("error: --no-ours and --no-reference leave nothing to run", file=sys.stderr)
        return 2
    if not a.no_reference and not os.path.isfile(a.reference):
        print(f"error: reference file {a.reference!r} not found; pass --reference PATH or --no-reference",
              file=sys.stderr)
        return 2
    s4 = load_reference(a.reference) if not a.no_reference else None
    variants = [make_variant(v, a, device, s4) for v in variants_from_args(a)]

    params = {}
    for v in variants:
        if v.name in ("ours", "reference"):
            params[v.name] = {"total": sum(p.numel() for p in v.model.parameters()),
                              "by_name": param_breakdown(v.model), "groups": summarize_groups(v.groups)}
    if "reference" in params and "ours" in params:
        po, pr = params["ours"]["total"], params["reference"]["total"]
        params["relative_difference"] = (po - pr) / pr

    benchmark(variants, a, device)
    out = {"device": device_name(device), "device_type": device.type, "torch": torch.__version__,
           "cuda": torch.version.cuda, "python": platform.python_version(), "args": vars(a),
           "params": {k: v for k, v in params.items()}}
    out.update(report(variants, a, device, {k: v for k, v in params.items() if k in ("ours", "reference")}))
    if "relative_difference" in params:
        print(f"\nparameters: ours {params['ours']['total']:,} vs reference {params['reference']['total']:,} "
              f"({100 * params['relative_difference']:+.2f}%); by tensor name (reference: inv_dt = log dt):")
        bo, br = params["ours"]["by_name"], params["reference"]["by_name"]
        print("  ours:      " + ", ".join(f"{k} {n:,}" for k, n in bo.items()))
        print("  reference: " + ", ".join(f"{k} {n:,}" for k, n in br.items()))
    if a.data:
        for v in variants:  # free the benchmark models before training
            v.model = v.runner = v.opt = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"\ntraining on real sCIFAR from {a.data} for {a.epochs} epoch(s)")
        out["training"] = train_on_data(variants, a, device)
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2, default=str)
        print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
