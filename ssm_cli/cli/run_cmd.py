"""``ssm run``: plan the grid, show it, run what is not done, print the table."""
from __future__ import annotations

import shlex
import sys

from omegaconf import OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ssm_cli.cli.progress import GridDisplay
from ssm_cli.errors import Interrupted, UserError
from ssm_cli.interrupts import exit_code
from ssm_cli.trace import trace
from ssm_cli.train.grid import find_identical, plan, reuse, run_local, run_serial, todo
from ssm_cli.train.pack import make_units
from ssm_cli.train.record import read_record

console = Console()
SUBMITIT_LAUNCHERS = ("slurm", "submitit_local")  # ssm_cli/launch/submit.py
STATUS_STYLE = {"completed": "green", "diverged": "red", "failed": "red", "running": "yellow", "pending": "yellow",
                "interrupted": "yellow", "running elsewhere": "yellow", "new": ""}


def styled(status: str) -> str:
    """``status`` as rich markup in its colour (escaped: no status or message is read as markup)."""
    style = STATUS_STYLE.get(status)
    return f"[{style}]{escape(status)}[/]" if style else escape(status)


def show_plan(runs) -> None:
    t = Table(title=f"{len(runs)} run(s)")
    for col in ("variant", "seed", "status", "run directory"):
        t.add_column(col)
    for r in runs:
        s = r.status
        t.add_row(escape(r.variant), str(r.seed), styled(s), escape(str(r.run_dir)))
    console.print(t)


def _pack_size(runs, retry_failed: bool, dry_run: bool) -> int:
    """``launcher.pack``, with ``auto`` measured on the GPU (``ssm_cli/train/pack_size.py``); a dry
    run shows the largest packs auto could form, without measuring."""
    from ssm_cli.train.pack import pack_key
    from ssm_cli.train.pack_size import AUTO, resolve

    cfg = runs[0].cfg
    if cfg.launcher.pack != AUTO:
        return int(cfg.launcher.pack)
    sizes: dict[str, int] = {}
    for r in todo(runs, retry_failed):
        sizes[pack_key(r.cfg)] = sizes.get(pack_key(r.cfg), 0) + 1
    n = max(sizes.values(), default=1)
    return n if dry_run else resolve(cfg, n)


def run_command(overrides: list[str], dry_run: bool, show_cfg: bool, retry_failed: bool, reuse_identical: bool = True) -> int:
    trace("imports done (torch, Hydra, Typer; Lightning comes when a run starts)")
    if any(o in ("--multirun", "-m") for o in overrides):
        raise UserError("ssm run sweeps without --multirun: comma lists and range(...) in overrides "
                        "(model.d_state=16,32,64) make the variants of a grid; drop --multirun")
    runs = plan(overrides)
    if show_cfg:
        cfg = runs[0].cfg
        console.print(OmegaConf.to_yaml(cfg, resolve=True), highlight=False, markup=False)
        return 0
    devices = int(runs[0].cfg.trainer.devices)
    if devices > 1 and str(runs[0].cfg.launcher.pack) != "1":  # a run over several devices trains alone
        console.print(f"launcher.pack={runs[0].cfg.launcher.pack} ignored: trainer.devices={devices} "
                      f"trains each run alone (DDP)", highlight=False)
    pack_size = 1 if devices > 1 else _pack_size(runs, retry_failed, dry_run)
    if dry_run:
        show_plan(runs)
        units = make_units(todo(runs, retry_failed), pack_size, dry_run=True)
        if runs[0].cfg.launcher.name in SUBMITIT_LAUNCHERS:
            from ssm_cli.launch.submit import describe_submission

            console.print(describe_submission(units, runs[0].cfg), highlight=False, markup=False)
        for unit in units:
            if len(unit) > 1:
                console.print(f"pack: {', '.join(r.variant for r in unit)}", highlight=False)
        return 0
    try:  # Ctrl-C and SIGTERM raise Interrupted (cli/main.py): the runs stop resumable
        return _execute(runs, overrides, retry_failed, reuse_identical, pack_size)
    except Interrupted as e:
        console.print(f"[yellow]interrupted (signal {e.signum})[/]", highlight=False)
        summarize(runs, overrides)
        return exit_code(e.signum)
    except UserError:  # e.g. a corrupt data file: the CLI prints it, after what is left
        summarize(runs, overrides)
        raise


def summarize(runs, overrides: list[str], elsewhere: frozenset = frozenset()) -> int:
    """One line saying what of the grid is not completed and the command that finishes it, on
    stderr; returns how many runs are not completed (0: nothing printed). ``elsewhere``: the run
    directories found held by another process (counted as running elsewhere unless completed)."""
    counts: dict[str, int] = {}
    data_files: list[str] = []
    for r in runs:
        record = read_record(r.run_dir) or {}
        status = record.get("status", "new")
        if r.run_dir in elsewhere and status != "completed":
            status = "running elsewhere"
        if status in ("new", "pending", "running"):  # running: the process ended without a word (kill -9)
            status = "interrupted" if status == "running" else "not started"
        counts[status] = counts.get(status, 0) + 1
        if status == "failed" and isinstance(record.get("data_file"), dict):
            data_files.append(record["data_file"]["path"])
    left = len(runs) - counts.pop("completed", 0)
    if not left:
        return 0
    order = ("not started", "interrupted", "running elsewhere", "failed", "diverged")
    parts = ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))
    command = shlex.join(["ssm", "run", *overrides])
    if counts.get("failed") or counts.get("diverged"):
        command += " --retry-failed"
    hint = ""
    if data_files:
        hint = f" (fix {', '.join(sorted(set(data_files))[:3])}: its runs rerun by themselves once it changes)"
    line = f"grid not complete: {len(runs) - left} of {len(runs)} run(s) completed; {parts}{hint}. To finish: {command}"
    print(line, file=sys.stderr, flush=True)
    return left


def _execute(runs, overrides: list[str], retry_failed: bool, reuse_identical: bool, pack_size: int) -> int:
    work = todo(runs, retry_failed)
    reused = 0
    if reuse_identical:
        for r in list(work):
            source = find_identical(r) if r.status == "new" else None
            if source is not None:
                reuse(r, source)
                work.remove(r)
                reused += 1
    skipped = len(runs) - len(work)
    first = runs[0].cfg
    console.print(f"[bold]{runs[0].ablation}[/] on [bold]{first.dataset.name}[/] (preset {first.preset.name}): "
                  f"{len(runs)} run(s), {skipped} already done or skipped ({reused} reused from identical runs), {len(work)} to run "
                  f"→ {first.out_dir}", highlight=False)
    outcomes: dict[str, int] = {}
    running_elsewhere: set = set()
    # the grid's bar and a bar per active run, from the runs' progress files (cli/progress.py)
    with GridDisplay(console, runs, work, per_run=bool(first.trainer.progress)) as progress:

        def on_done(r, record) -> None:
            status = record.get("status", "failed")
            if status == "locked":
                running_elsewhere.add(r.run_dir)
            outcomes[status] = outcomes.get(status, 0) + 1
            result = record.get("result")
            extra = f" {record.get('metric')}={result:.2f}" if isinstance(result, float) else ""
            if status in ("failed", "diverged"):
                extra += f" ({record.get('error')})"
            shown = status
            if status == "locked":  # another process runs it now: skipped here, a later rerun finds it done
                holder = record.get("holder") or {}
                shown = "running elsewhere"
                extra = f" (host {holder.get('host') or '?'}, pid {holder.get('pid') or '?'}); skipped"
            progress.done(r, f"  {escape(r.variant)} seed {r.seed}: {styled(shown)}{escape(extra)}")

        launcher = first.launcher
        units = make_units(work, pack_size)
        trace(f"grid planned: {len(units)} unit(s)")
        packs = [u for u in units if len(u) > 1]
        if packs:
            progress.console.print(f"  {len(packs)} pack(s) of {', '.join(str(len(u)) for u in packs)} runs "
                                   f"trained as one network each (launcher.pack={pack_size})", highlight=False)
        # subprocesses only where two units can run at once: one unit (e.g. the whole grid as one
        # pack) runs here, without a worker's second start-up (its imports of torch and Lightning)
        if launcher.name in SUBMITIT_LAUNCHERS:
            from ssm_cli.launch.submit import run_submitit

            if not run_submitit(units, first, on_done, progress.console):
                return 0  # submitted, not followed (launcher.wait=false): `ssm status` tells the rest
        elif launcher.name == "local" and min(int(launcher.jobs), len(units)) > 1:
            run_local(units, int(launcher.jobs), on_done)
        elif int(first.trainer.devices) > 1:  # a worker process, which Lightning starts once per rank
            run_local(units, 1, on_done)
        else:
            run_serial(units, on_done)
    if runs[0].ablation is not None:
        from ssm_cli.results.table import aggregate, load_records, render

        records = [r for r in load_records(first.out_dir)
                   if r.get("ablation") == runs[0].ablation and r.get("dataset") in {x.dataset for x in runs}
                   and r.get("preset") == first.preset.name]
        print(render(aggregate(records), "rich"), end="")
    trace("grid done")
    left = summarize(runs, overrides, frozenset(running_elsewhere))
    return 1 if left else 0
