"""Pack sizes that fit the GPU: ``launcher.pack=auto``, and halving a pack that ran out of memory.

``launcher.pack=auto`` picks the pack size K from a measurement: one training step of a single
member (forward, backward) on the GPU gives its peak memory, and K is the number of such members
that fit in ``FREE_FRACTION`` of the GPU's free memory (at least 1, at most the runs that can share
a pack). Without a GPU nothing is measured and every run that can share a pack joins it.

When a pack runs out of GPU memory anyway (``torch.cuda.OutOfMemoryError`` in any step), its
members' records say so and ``execute_splitting`` splits it in two halves, each resumed from its
members' share of the pack's last checkpoint (``split_checkpoint``), and so on down to single runs;
every run is trained, and recorded, exactly once. A single run that does not fit stays ``failed``.
"""
from __future__ import annotations

import gc
import os
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ssm_cli.trace import trace
from ssm_cli.train.record import CHECKPOINT, CONFIG

AUTO = "auto"
FREE_FRACTION = 0.8  # of the free GPU memory a pack may plan to use: room for fragmentation
OOM_ERROR = "OutOfMemoryError"  # how a record names the exception (run._fit: "<type>: <message>")


def is_oom(record: dict) -> bool:
    """Whether a run failed because the GPU ran out of memory."""
    return record.get("status") == "failed" and str(record.get("error") or "").startswith(OOM_ERROR)


def choose_k(member_bytes: int, free_bytes: int, n_runs: int) -> int:
    """Members of ``member_bytes`` each that fit in ``FREE_FRACTION`` of ``free_bytes``, in 1..n_runs."""
    fit = int(FREE_FRACTION * free_bytes // max(member_bytes, 1))
    return max(1, min(n_runs, fit))


def measure_member_bytes(cfg: DictConfig) -> int:
    """Peak GPU memory (bytes) of one training step of one run of ``cfg`` at its batch size, on
    random inputs of the dataset's shape (the data's spec is read from the dataset, cached)."""
    from ssm_cli.data import load_dataset
    from ssm_cli.train.task import SequenceTask

    data = load_dataset(cfg.dataset.name, cfg.data_dir, **OmegaConf.to_container(cfg.dataset.options, resolve=True))
    spec, B = data.spec, int(cfg.trainer.batch_size)
    cfg = cfg.copy()
    cfg.trainer.compile = False  # eager: no compilation for one step (and no less memory than compiled)
    task = SequenceTask([cfg], spec, ["val"], [1.0], steps_per_epoch=1, seed=int(cfg.run.seed))
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    task = task.cuda()
    x, _ = data.train[0]
    x = x[None].expand(B, *x.shape).contiguous().cuda()  # (B, L, d) or (B, L) tokens
    y = torch.zeros(B, dtype=torch.int64, device="cuda")
    if spec.task == "regression":
        y = torch.zeros(B, spec.d_output, device="cuda")
    opt = torch.optim.AdamW(task.parameters())
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=str(cfg.trainer.precision).startswith("bf16")):
        loss = task._loss(task(x), y).sum()
    loss.backward()
    opt.step()  # AdamW's state: two more copies of the weights
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del task, x, y, opt, loss
    gc.collect()
    torch.cuda.empty_cache()
    return int(peak)


def resolve(cfg: DictConfig, n_runs: int) -> int:
    """``launcher.pack`` as a number: itself, or for ``auto`` the measured fit (``n_runs``: the
    most runs of the grid that can share a pack)."""
    pack = cfg.launcher.pack
    if pack != AUTO:
        return int(pack)
    from ssm_cli.train.device import resolve_device

    if resolve_device(cfg).type != "cuda" or n_runs <= 1:
        return max(n_runs, 1)
    member = measure_member_bytes(cfg)
    free, _ = torch.cuda.mem_get_info()
    k = choose_k(member, free, n_runs)
    print(f"launcher.pack=auto: one run takes {member / 2**20:.0f} MiB at batch {cfg.trainer.batch_size}, "
          f"{free / 2**20:.0f} MiB free: packs of {k}", flush=True)
    return k


def split_checkpoint(pack_ckpt: Path, indices: list[int], dest: Path) -> None:
    """Write the pack of members ``indices`` (in that order) cut out of a pack checkpoint.

    The same cut as ``pack.unpack_checkpoint`` for several members: weights
    ``model.members.<k>.*`` renumbered, the optimizer's groups of those members in order (their
    parameter states renumbered by order of appearance), per-group scheduler lists sliced alike,
    the members' histories and kept best-epoch weights.
    """
    ck = torch.load(pack_ckpt, map_location="cpu", weights_only=False)
    counts = ck["ssm_pack_groups"]
    starts = [sum(counts[:k]) for k in range(len(counts))]
    group_ids = [g for k in indices for g in range(starts[k], starts[k] + counts[k])]
    state = {}
    for new, old in enumerate(indices):
        prefix = f"model.members.{old}."
        state.update({f"model.members.{new}." + k[len(prefix):]: v
                      for k, v in ck["state_dict"].items() if k.startswith(prefix)})
    ck["state_dict"] = state
    new_states = []
    for opt in ck["optimizer_states"]:
        groups = [opt["param_groups"][g] for g in group_ids]
        renumber = {old: new for new, old in enumerate(i for g in groups for i in g["params"])}
        new_states.append({"state": {renumber[i]: v for i, v in opt["state"].items() if i in renumber},
                           "param_groups": [dict(g, params=[renumber[i] for i in g["params"]]) for g in groups]})
    ck["optimizer_states"] = new_states
    for sched in ck.get("lr_schedulers", []):
        for key, value in list(sched.items()):
            if isinstance(value, list) and len(value) == sum(counts):
                sched[key] = [value[g] for g in group_ids]
    ck["ssm_histories"] = [ck["ssm_histories"][k] for k in indices]
    if ck.get("ssm_best_states"):
        ck["ssm_best_states"] = [ck["ssm_best_states"][k] for k in indices]
    ck["ssm_diverged"] = {new: ck["ssm_diverged"][old] for new, old in enumerate(indices) if old in ck.get("ssm_diverged", {})}
    ck["ssm_pack_groups"] = [counts[k] for k in indices]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    torch.save(ck, tmp)
    os.replace(tmp, dest)


def execute_splitting(run_dirs: list[Path], progress: bool | None = None) -> list[dict]:
    """``run.execute_pack``, halving the pack (recursively) where it runs out of GPU memory; the
    records of ``run_dirs``, in order."""
    from ssm_cli.train.pack import pack_dir, unpack_checkpoint
    from ssm_cli.train.run import execute_pack

    run_dirs = [Path(d) for d in run_dirs]
    records = execute_pack(run_dirs, progress)
    if len(run_dirs) == 1 or not any(is_oom(r) for r in records):
        return records
    gc.collect()  # the failed pack's tensors
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    out_dir = OmegaConf.load(run_dirs[0] / CONFIG).out_dir
    ckpt = pack_dir(out_dir, run_dirs) / CHECKPOINT
    half = (len(run_dirs) + 1) // 2
    parts = [list(range(half)), list(range(half, len(run_dirs)))]
    trace(f"pack of {len(run_dirs)} out of GPU memory: split into {half} + {len(run_dirs) - half}")
    print(f"pack of {len(run_dirs)} runs out of GPU memory: retrying as packs of {half} and "
          f"{len(run_dirs) - half}" + (" from its last checkpoint" if ckpt.exists() else ""), flush=True)
    for part in parts:
        dirs = [run_dirs[k] for k in part]
        if ckpt.exists():
            if len(part) == 1:
                unpack_checkpoint(ckpt, part[0], dirs[0] / CHECKPOINT)
            else:
                split_checkpoint(ckpt, part, pack_dir(out_dir, dirs) / CHECKPOINT)
    out: list[dict] = []
    for part in parts:
        out.extend(execute_splitting([run_dirs[k] for k in part], progress))
    return out
