"""Packs: runs of a grid trained together as one wide network (``launcher.pack=K``).

Runs whose configs differ only in the model's SSM-core options (init, discretisation, transforms,
trainable B, the core itself, its learning rate...) and share everything else — dataset, seed,
trainer, optimizer, schedule, backbone shape — see the same batches, so K of them can be trained
in one process as a ``PackedModel``: one kernel launch per op for all K, which fills a GPU that
one small run leaves idle. Each member keeps its own run directory and record; the pack's
checkpoint lives in ``<out_dir>/packs/<id>/`` beside ``pack.json`` (the members, in order).

Resuming: the planner re-forms an interrupted pack when all its members are to run again; when
it cannot (packing turned off, a member done elsewhere), each member gets its own ``last.ckpt``
cut out of the pack's (``unpack_checkpoint``) and continues alone, so no finished epoch is lost.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ssm_cli.train.record import CHECKPOINT, read_record, write_json_atomic

PACKS = "packs"  # folder of the packs' checkpoints under out_dir


def pack_key(cfg: DictConfig) -> str:
    """Runs with equal keys can share a pack: the config without the SSM-core options and the
    run's identity (ablation, variant, hash), plus the seed and the core options that set the
    shape of a core's output (``registry.SHAPE_OPTIONS``, defaults filled in: cores of different
    kinds pack together when these agree)."""
    from ssm_cli.layers.registry import SHAPE_OPTIONS, resolve
    from ssm_cli.model import BACKBONE_KEYS, split_model_config

    _, core_options = split_model_config(cfg.model)
    options = resolve(cfg.model.core, core_options)
    d = OmegaConf.to_container(cfg, resolve=True)
    for key in ("run", "name", "ablation"):
        d.pop(key, None)
    model = d["model"]
    d["model"] = {k: model[k] for k in BACKBONE_KEYS if k in model and k != "core"}
    d["model"].update({k: options.get(k, absent) for k, absent in SHAPE_OPTIONS.items()})
    d["seed"] = cfg.run.seed
    d["model"]["mixer"] = core_is_mixer(model["core"])  # a block's tail differs for mixer cores
    return json.dumps(d, sort_keys=True, default=str)


def core_is_mixer(core: str) -> bool:
    """Whether core ``core`` is its block's whole mixer (``SSMCore.mixer``: no output linear after it)."""
    from ssm_cli.layers.registry import spec

    return bool(getattr(spec(core).factory, "mixer", False))


def pack_dir(out_dir: str | Path, run_dirs: list[Path]) -> Path:
    """``<out_dir>/packs/<id>``: the id is a hash of the members' run directories, in order."""
    h = hashlib.sha256("\n".join(str(Path(d).resolve()) for d in run_dirs).encode()).hexdigest()[:12]
    return Path(out_dir) / PACKS / h


def write_pack(pdir: Path, run_dirs: list[Path]) -> None:
    pdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(pdir / "pack.json", {"members": [str(d) for d in run_dirs]})


def unpack_checkpoint(pack_ckpt: Path, index: int, dest: Path) -> None:
    """Write member ``index``'s share of a pack checkpoint as a single run's checkpoint ``dest``.

    Model weights ``model.members.<k>.*`` -> ``model.*``; the optimizer's groups of member k (the
    pack's groups are the members' groups in order, ``ssm_pack_groups`` counts them) with their
    states renumbered; per-group lists of the LR scheduler sliced the same way; member k's history
    and its kept weights of its best epoch.
    """
    ck = torch.load(pack_ckpt, map_location="cpu", weights_only=False)
    counts = ck["ssm_pack_groups"]
    g0, g1 = sum(counts[:index]), sum(counts[:index + 1])
    prefix = f"model.members.{index}."
    ck["state_dict"] = {"model." + k[len(prefix):]: v for k, v in ck["state_dict"].items() if k.startswith(prefix)}
    new_states = []
    for opt in ck["optimizer_states"]:
        groups = opt["param_groups"][g0:g1]
        old_ids = [i for g in groups for i in g["params"]]
        renumber = {old: new for new, old in enumerate(old_ids)}
        state = {renumber[i]: v for i, v in opt["state"].items() if i in renumber}
        new_groups = [dict(g, params=[renumber[i] for i in g["params"]]) for g in groups]
        new_states.append({"state": state, "param_groups": new_groups})
    ck["optimizer_states"] = new_states
    n_groups = sum(counts)
    for sched in ck.get("lr_schedulers", []):
        for key, value in list(sched.items()):
            if isinstance(value, list) and len(value) == n_groups:
                sched[key] = value[g0:g1]
    ck["ssm_histories"] = [ck["ssm_histories"][index]]
    if ck.get("ssm_best_states"):  # trainer.test_at=best: member k's weights of its best epoch
        ck["ssm_best_states"] = [ck["ssm_best_states"][index]]
    ck["ssm_diverged"] = {}
    ck["ssm_pack_groups"] = [counts[index]]
    tmp = dest.with_name(f".{dest.name}.tmp")
    torch.save(ck, tmp)
    os.replace(tmp, dest)


def make_units(runs: list, size: int, dry_run: bool = False) -> list[list]:
    """Split the runs to do into units of execution: packs of at most ``size`` runs, or single runs.
    ``dry_run``: the same units, with nothing written (no record, no member's checkpoint).

    - an interrupted pack whose members are all here is formed again (it resumes);
    - members of an interrupted pack that cannot be formed again get their share of its
      checkpoint and run alone;
    - runs with a checkpoint of their own run alone (they resume);
    - the rest are grouped by ``pack_key`` in grid order and cut into packs of ``size``.
    """
    units: list[list] = []
    earlier: dict[str, list] = {}
    fresh = []
    for r in runs:
        record = read_record(r.run_dir) or {}
        p = record.get("pack")
        if p and record.get("status") == "diverged":  # a retried diverged member starts afresh
            if not dry_run:
                record.pop("pack")
                write_json_atomic(r.run_dir / "record.json", record)
            p = None
        if p and not (r.run_dir / CHECKPOINT).exists() and (Path(p["dir"]) / CHECKPOINT).exists():
            earlier.setdefault(p["dir"], []).append((r, p))
        elif (r.run_dir / CHECKPOINT).exists():
            units.append([r])
        else:
            fresh.append(r)
    for pdir, items in earlier.items():
        mine = {str(r.run_dir): r for r, _ in items}
        members = items[0][1]["members"]
        if size > 1 and sorted(mine) == sorted(members):
            units.append([mine[m] for m in members])
            continue
        for r, p in items:
            if not dry_run:
                unpack_checkpoint(Path(pdir) / CHECKPOINT, int(p["index"]), r.run_dir / CHECKPOINT)
            units.append([r])
    groups: dict[str, list] = {}
    for r in fresh:
        groups.setdefault(pack_key(r.cfg) if size > 1 else str(r.run_dir), []).append(r)
    for members in groups.values():
        units.extend(members[i:i + size] for i in range(0, len(members), max(size, 1)))
    return units
