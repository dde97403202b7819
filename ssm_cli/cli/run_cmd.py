"""``ssm run``: plan the grid, show it, run what is not done, print the table."""
from __future__ import annotations

from omegaconf import OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ssm_cli.errors import UserError
from ssm_cli.trace import trace
from ssm_cli.train.grid import find_identical, plan, reuse, run_local, run_serial, todo
from ssm_cli.train.pack import make_units, pack_key

console = Console()
STATUS_STYLE = {"completed": "green", "diverged": "red", "failed": "red", "running": "yellow", "pending": "yellow", "new": ""}


def show_plan(runs) -> None:
    t = Table(title=f"{len(runs)} run(s)")
    for col in ("variant", "seed", "status", "run directory"):
        t.add_column(col)
    for r in runs:
        s = r.status
        t.add_row(r.variant, str(r.seed), f"[{STATUS_STYLE.get(s, '')}]{s}[/]" if STATUS_STYLE.get(s) else s, str(r.run_dir))
    console.print(t)


def run_command(overrides: list[str], dry_run: bool, show_cfg: bool, retry_failed: bool, reuse_identical: bool = True) -> int:
    trace("imports done (torch, Hydra, Typer; Lightning comes when a run starts)")
    runs = plan(overrides)
    if show_cfg:
        cfg = runs[0].cfg
        console.print(OmegaConf.to_yaml(cfg, resolve=True), highlight=False, markup=False)
        return 0
    pack_size = int(runs[0].cfg.launcher.pack)
    if dry_run:
        show_plan(runs)
        if pack_size > 1:
            groups: dict[str, list] = {}
            for r in todo(runs, retry_failed):
                groups.setdefault(pack_key(r.cfg), []).append(r.variant)
            for names in groups.values():
                for i in range(0, len(names), pack_size):
                    console.print(f"pack: {', '.join(names[i:i + pack_size])}", highlight=False)
        return 0
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
    with Progress(TextColumn("[bold]grid"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console, transient=False) as progress:
        task = progress.add_task("", total=len(runs), completed=skipped)

        def on_done(r, record) -> None:
            status = record.get("status", "failed")
            outcomes[status] = outcomes.get(status, 0) + 1
            result = record.get("result")
            extra = f" {record.get('metric')}={result:.2f}" if isinstance(result, float) else ""
            if status in ("failed", "diverged"):
                extra += f" ({record.get('error')})"
            progress.console.print(f"  {r.variant} seed {r.seed}: [{STATUS_STYLE.get(status, '')}]{status}[/]{extra}",
                                   highlight=False)
            progress.advance(task)

        launcher = first.launcher
        units = make_units(work, pack_size)
        trace(f"grid planned: {len(units)} unit(s)")
        packs = [u for u in units if len(u) > 1]
        if packs:
            progress.console.print(f"  {len(packs)} pack(s) of {', '.join(str(len(u)) for u in packs)} runs "
                                   f"trained as one network each (launcher.pack={pack_size})", highlight=False)
        # subprocesses only where two units can run at once: one unit (e.g. the whole grid as one
        # pack) runs here, without a worker's second start-up (its imports of torch and Lightning)
        if launcher.name == "local" and min(int(launcher.jobs), len(units)) > 1:
            run_local(units, int(launcher.jobs), on_done)
        else:
            run_serial(units, on_done)
    if runs[0].ablation is not None:
        from ssm_cli.results.table import aggregate, load_records, render

        records = [r for r in load_records(first.out_dir)
                   if r.get("ablation") == runs[0].ablation and r.get("dataset") == first.dataset.name
                   and r.get("preset") == first.preset.name]
        print(render(aggregate(records), "rich"), end="")
    trace("grid done")
    bad = sum(n for s, n in outcomes.items() if s not in ("completed", "locked"))
    return 1 if bad else 0
