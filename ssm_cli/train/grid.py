"""Ablation grids: expand (variant × seed) into planned runs, then run what is not done yet.

Run directories are deterministic — ``<out_dir>/<ablation>/<dataset>/<variant>/seed<seed>-<hash>``
with the hash of the resolved config — so rerunning a command finds its earlier runs: completed
ones are skipped, interrupted ones resume from their checkpoint, failed and diverged ones are
rerun only with ``retry_failed``, or, for a run that failed on a corrupt data file, once that file
has changed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from ssm_cli.config import compose, config_hash, preset_overrides
from ssm_cli.errors import Interrupted, UserError
from ssm_cli.paths import check_writable
from ssm_cli.trace import trace
from ssm_cli.train.record import CONFIG, data_file_changed, locked_record, read_record, set_aside_unreadable_record
from ssm_cli.train.sweep import split_sweep, sweep_name, sweep_variants

SINGLE = "single"  # the ablation folder of runs made without an ablation


@dataclass
class PlannedRun:
    ablation: str
    dataset: str
    variant: str
    seed: int
    overrides: list[str]
    cfg: DictConfig = field(repr=False)
    run_dir: Path

    @property
    def status(self) -> str:
        record = read_record(self.run_dir)
        return record["status"] if record else "new"


def effective_seeds(cfg: DictConfig) -> list[int]:
    """Explicit ``seeds=`` > the protocol's seed (preset paper/short) > the ablation's > [0]."""
    if cfg.seeds is not None:
        return list(cfg.seeds)
    if cfg.preset.get("protocol") and cfg.get("protocol_seed") is not None:
        return [int(cfg.protocol_seed)]
    if cfg.get("ablation") is not None and cfg.ablation.get("seeds") is not None:
        return list(cfg.ablation.seeds)
    return [0]


def plan(overrides: list[str]) -> list[PlannedRun]:
    """Every run of the command, composed and validated (nothing runs if any variant is invalid)."""
    overrides, swept, combos = split_sweep(overrides)  # model.d_state=16,32: an ad-hoc grid (train/sweep.py)
    base = compose(overrides + (combos[0] if combos else []))
    check_writable(Path(base.out_dir), "out_dir")
    ablation = base.get("ablation")
    if ablation is None:
        variants = [{"name": base.name, "overrides": [], "paper": None}]
        ablation_name, metric = SINGLE, None
    else:
        variants = OmegaConf.to_container(ablation.variants, resolve=True)
        ablation_name, metric = ablation.name, ablation.get("metric")
    if combos:
        variants = sweep_variants(swept, combos, variants if ablation is not None else None)
        ablation_name = sweep_name(swept, ablation.name if ablation is not None else None)
        names = [v["name"] for v in variants]
        if len(set(names)) != len(names):
            raise UserError(f"ablation {ablation_name!r} has duplicate variant names: {names}")
        kept = [v["name"] for v in available_variants(ablation_name, variants)]  # indices stay the declared ones
        variants = [v if v["name"] in kept else None for v in variants]
    trace("base config composed")
    runs = []
    for index, variant in enumerate(variants):
        if variant is None:
            continue
        v_overrides = list(variant.get("overrides") or [])
        cfg = base
        if v_overrides:  # composed once: the protocol and epochs its preset adds guessed from the base's
            cfg = compose(overrides + v_overrides, guess=preset_overrides(base, overrides + v_overrides))
        m = metric or ("test_acc" if cfg.dataset.name != "bidmc" else "test_rmse")
        paper = (variant.get("paper") or {}).get(cfg.dataset.name)
        for seed in effective_seeds(cfg):
            c = cfg.copy()
            with open_dict(c):
                c.run = {"ablation": ablation_name, "variant": variant["name"], "variant_index": index,
                         "seed": int(seed), "overrides": list(overrides) + v_overrides, "metric": m,
                         "paper": paper, "config_hash": None}
                h = config_hash(c)
                c.run.config_hash = h
            run_dir = Path(c.out_dir) / ablation_name / c.dataset.name / variant["name"] / f"seed{seed}-{h}"
            runs.append(PlannedRun(ablation_name, c.dataset.name, variant["name"], int(seed),
                                   list(overrides) + v_overrides, c, run_dir))
    trace(f"configs composed: {sum(v is not None for v in variants)} variant(s), {len(runs)} run(s)")
    return runs


def available_variants(ablation: str, variants: list[dict]) -> list[dict]:
    """The variants whose ``requires_core`` (if any) is a registered core; each one left out is
    named on stderr (e.g. ``s5`` in ``ablation=family`` before the S5 core exists)."""
    from ssm_cli.layers.registry import names

    cores = set(names())
    kept = []
    for v in variants:
        need = v.get("requires_core")
        if need is not None and need not in cores:
            print(f"warning: ablation {ablation!r} skips variant {v['name']!r}: it needs the core {need!r}, "
                  f"which is not registered (registered: {', '.join(sorted(cores))})", file=sys.stderr, flush=True)
            continue
        kept.append(v)
    if not kept:
        raise UserError(f"ablation {ablation!r} has no variant whose core is registered")
    return kept


def prepare(run: PlannedRun) -> None:
    """Write the run's resolved config (once; an existing one is kept, it has the same hash), and
    set an unreadable record aside (``record.json.corrupt``): the run gets a new one."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    aside = set_aside_unreadable_record(run.run_dir)
    if aside is not None:
        print(f"warning: unreadable record of {run.variant} seed {run.seed} kept as {aside}; "
              f"the run gets a new record", file=sys.stderr, flush=True)
    path = run.run_dir / CONFIG
    if not path.exists():  # a temporary file of this process's own: two grids may prepare a run at once
        tmp = path.with_name(f".{CONFIG}.{os.getpid()}.tmp")
        OmegaConf.save(run.cfg, tmp, resolve=True)
        os.replace(tmp, path)


def find_identical(run: PlannedRun) -> Path | None:
    """A completed run elsewhere under out_dir that computed exactly this (same config hash, seed).

    Ablations share their baseline (e.g. S4D-Inv + ZOH + trainable B + exp is a variant of every
    ablation); the hash covers everything a run computes and nothing of where it is filed.
    """
    pattern = f"*/{run.dataset}/*/{run.run_dir.name}/record.json"
    for path in sorted(Path(run.cfg.out_dir).glob(pattern)):
        record = read_record(path.parent)
        if path.parent != run.run_dir and record and record.get("status") == "completed":
            return path.parent
    return None


def reuse(run: PlannedRun, source: Path) -> dict:
    """File a copy of an identical completed run's record under this run (no checkpoint copy)."""
    from ssm_cli.train.record import write_json_atomic

    prepare(run)
    record = dict(read_record(source))
    r = run.cfg.run
    origin = record.get("reused_from") or str(source)  # always name the run that computed it
    record.update(ablation=r.ablation, variant=r.variant, variant_index=r.variant_index, paper=r.paper,
                  overrides=list(r.overrides), metric=r.metric, run_dir=str(run.run_dir), reused_from=origin)
    if record.get("best"):
        record["result"] = record["best"].get(r.metric)
    write_json_atomic(run.run_dir / "record.json", record)
    return record


def todo(runs: list[PlannedRun], retry_failed: bool) -> list[PlannedRun]:
    """The runs to execute: all but the completed ones, and without ``retry_failed`` but the failed
    and diverged ones too, except a run that failed on a data file which has changed since."""
    out = []
    for r in runs:
        record = read_record(r.run_dir) or {}
        status = record.get("status", "new")
        if status == "completed":
            continue
        interrupted = status == "failed" and record.get("error") == "interrupted"  # so recorded by earlier versions
        if status in ("failed", "diverged") and not (retry_failed or interrupted or data_file_changed(record)):
            continue
        out.append(r)
    return out


def start_early(cfg: DictConfig) -> None:
    """Start what a run will need and that does not need Lightning, in background threads, so it
    goes on while Lightning is imported (seconds; on some machines tens of seconds): the run's
    dataset is read (``ssm_cli.data.registry.prefetch``; ``load_dataset`` in the run takes it), and
    CUDA and torch.compile's worker processes are started when the run will use them
    (``ssm_cli.train.device.start_cuda_early``). None of it changes what the run computes."""
    from ssm_cli.data.registry import prefetch
    from ssm_cli.train.device import start_cuda_early

    options = OmegaConf.to_container(cfg.dataset.options, resolve=True)
    prefetch(cfg.dataset.name, cfg.data_dir, **options)
    start_cuda_early(cfg)


def run_serial(units: list[list[PlannedRun]], on_done) -> None:
    """Each unit (one run, or a pack of runs) in turn, in this process; the first unit's data is
    read while Lightning is imported (``start_early``)."""
    from ssm_cli.data.registry import drop_prefetches

    if units:
        start_early(units[0][0].cfg)
    from ssm_cli.train.pack_size import execute_splitting

    trace("training code imported (Lightning)")
    try:
        for unit in units:
            for r in unit:
                prepare(r)
            # progress=False: the grid's display shows the run (its progress.json), not Lightning's bar
            for r, record in zip(unit, execute_splitting([r.run_dir for r in unit], progress=False)):
                on_done(r, record)
            drop_prefetches()  # one the run did not take (its config.yaml names other data)
    finally:
        drop_prefetches()


def run_local(units: list[list[PlannedRun]], jobs: int, on_done) -> None:
    """``jobs`` units (runs or packs) at a time as subprocesses, round-robin over the visible GPUs
    (``trainer.devices`` of them per unit)."""
    import torch

    n_gpus = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpu_ids = visible.split(",") if visible else [str(i) for i in range(n_gpus)]
    per = int(units[0][0].cfg.trainer.devices) if units else 1  # a run over several GPUs (DDP) gets as many
    groups = [",".join(gpu_ids[i:i + per]) for i in range(0, len(gpu_ids) - per + 1, per)]
    pending = list(units)
    active: list[tuple[subprocess.Popen, list[PlannedRun]]] = []
    slot = 0
    try:
        while pending or active:
            while pending and len(active) < jobs:
                unit = pending.pop(0)
                for r in unit:
                    prepare(r)
                env = dict(os.environ)
                if groups:
                    env["CUDA_VISIBLE_DEVICES"] = groups[slot % len(groups)]
                slot += 1
                log = open(unit[0].run_dir / "stdout.log", "a")
                p = subprocess.Popen([sys.executable, "-m", "ssm_cli.train.worker", *(str(r.run_dir) for r in unit)],
                                     env=env, stdout=log, stderr=subprocess.STDOUT)
                log.close()
                active.append((p, unit))
            time.sleep(0.5)
            for p, unit in list(active):
                if p.poll() is not None:
                    active.remove((p, unit))
                    for r in unit:
                        on_done(r, _outcome(r, p.returncode))
    except Interrupted:
        stop_workers([p for p, _ in active])
        raise


def _outcome(run: PlannedRun, returncode: int) -> dict:
    """The record of a run after its worker exited. A worker that found runs held by another
    process exits ``LOCKED_EXIT``; those runs' records are the holder's, not final yet."""
    from ssm_cli.train.worker import LOCKED_EXIT

    record = read_record(run.run_dir)
    if returncode == LOCKED_EXIT and (record is None or record.get("status") in ("pending", "running")):
        return locked_record(run.run_dir)
    return record or {"status": "failed", "error": f"worker exit {returncode}"}


def stop_workers(procs: list[subprocess.Popen], grace: float = 60.0) -> None:
    """Ask the workers to stop (SIGTERM: each records its runs as interrupted, resumable) and wait
    for them; one still running after ``grace`` seconds is killed (its runs resume all the same)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)  # a worker that has SIGINT from the terminal already ignores it
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
