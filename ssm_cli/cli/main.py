"""The ``ssm`` command line: run grids, print tables, plot curves, list configs, manage data."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from ssm_cli.errors import Interrupted, UserError
from ssm_cli.interrupts import exit_code, signals_raise

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproduce the ablations of the diagonal state space model papers.")
console = Console()
err = Console(stderr=True)


def fail(e: UserError) -> None:
    err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)  # paths stay whole, copyable
    raise typer.Exit(2)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    overrides: Optional[List[str]] = typer.Argument(None, help="Hydra overrides, e.g. ablation=init dataset=scifar model.d_state=64 seeds=[0,1,2]; comma lists and range(...) sweep: model.d_state=16,32,64"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the grid and where each run will write; run nothing."),
    cfg: bool = typer.Option(False, "--cfg", help="Print the composed config and exit."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Rerun failed and diverged runs too."),
    no_reuse: bool = typer.Option(False, "--no-reuse", help="Run a variant even if an identical completed run (same config hash and seed) exists under out_dir in another ablation."),
) -> None:
    """Run one config, an ablation grid (variants × seeds) with ablation=NAME, or a sweep
    (model.d_state=16,32,64: one variant per value). Completed runs are skipped and interrupted
    ones resume, so rerunning a command finishes its grid."""
    from ssm_cli.cli.run_cmd import run_command

    try:
        with signals_raise():  # SIGINT/SIGTERM: runs stop resumable and the grid says what is left
            code = run_command(list(overrides or []), dry_run=dry_run, show_cfg=cfg, retry_failed=retry_failed,
                               reuse_identical=not no_reuse)
    except UserError as e:
        fail(e)
    except Interrupted as e:  # before the grid started (while composing): nothing to resume
        err.print(f"interrupted (signal {e.signum}); nothing was run", highlight=False)
        raise typer.Exit(exit_code(e.signum))
    raise typer.Exit(code)


@app.command()
def table(
    runs_dir: Path = typer.Argument(Path("outputs"), help="Folder holding the runs (searched recursively)."),
    format: str = typer.Option("rich", "--format", "-f", help="rich | md | csv | latex | json"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the table to this file."),
    ablation: Optional[str] = typer.Option(None, help="Only this ablation."),
    dataset: Optional[str] = typer.Option(None, help="Only this dataset."),
    preset: Optional[str] = typer.Option(None, help="Only runs of this preset."),
) -> None:
    """Aggregate run records: mean ± std over seeds, n, the paper's figure and our difference."""
    from ssm_cli.results.table import aggregate, load_records, render

    unreadable: list = []
    try:
        if out:
            check_output_file(out)
        records = [r for r in load_records(runs_dir, unreadable)
                   if (ablation is None or r.get("ablation") == ablation) and (dataset is None or r.get("dataset") == dataset)
                   and (preset is None or r.get("preset") == preset)]
        text = render(aggregate(records), format)
        if out:
            write_output(out, text)
            err.print(f"wrote {out}")
        else:
            sys.stdout.write(text)
    except UserError as e:
        fail(e)
    finally:
        warn_unreadable(unreadable)


@app.command()
def status(
    out_dir: Path = typer.Argument(Path("outputs"), help="The out_dir of the grids."),
) -> None:
    """Each run under OUT_DIR: done / running (where) / queued / interrupted / failed (its log's last lines)."""
    from rich.table import Table

    from ssm_cli.launch.status import grid_states

    states = grid_states(out_dir)
    if not states:
        err.print(f"no runs under {out_dir}")
        raise typer.Exit(1)
    t = Table(title=f"{len(states)} run(s) under {out_dir}")
    for col in ("ablation", "dataset", "variant", "seed", "state", "where / error"):
        t.add_column(col)
    for s in states:
        t.add_row(s.ablation, s.dataset, s.variant, s.seed, s.state, s.where)
    out = Console(width=200)
    out.print(t, highlight=False, markup=False)
    for s in states:
        if s.log_tail:
            out.print(f"--- {s.run_dir} ({s.state}): last lines of its log", highlight=False, markup=False)
            out.print("\n".join(s.log_tail), highlight=False, markup=False)
    counts: dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    out.print(", ".join(f"{n} {k}" for k, n in counts.items()), highlight=False, markup=False)


def warn_unreadable(unreadable: list) -> None:
    """List the records left out of a table or plot because they cannot be read (on stderr)."""
    if unreadable:
        err.print(f"[yellow]{len(unreadable)} unreadable record(s) left out (rerun their runs, or fix or delete the files):[/]",
                  highlight=False)
        for e in unreadable:
            err.print(f"  {e.path}: {e.reason}", highlight=False, markup=False, soft_wrap=True)


def check_output_file(path: Path) -> None:
    """UserError unless the file ``path`` can be written (its folder exists or can be created)."""
    from ssm_cli.paths import check_writable

    if path.is_dir():
        raise UserError(f"--out {str(path)!r} is a folder; name a file")
    check_writable(path.parent, "--out folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"--out {str(path)!r} is not writable; choose another file or fix the permissions")


def write_output(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as e:
        raise UserError(f"cannot write {str(path)!r}: {e.strerror or e}") from None


@app.command()
def plot(
    runs_dir: Path = typer.Argument(Path("outputs")),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the pictures (default: RUNS_DIR)."),
    metric: str = typer.Option("val_acc", help="Per-epoch metric to plot, e.g. val_acc, test_acc, train_loss."),
    format: str = typer.Option("png", "--format", "-f", help="png | pdf | svg"),
    n: int = typer.Option(64, "--n", help="`ssm plot transfer`: the state size N of the initialisations."),
    checkpoint: Optional[Path] = typer.Option(None, help="`ssm plot transfer`: also a trained s4d run's last.ckpt."),
) -> None:
    """Learning curves: one file per (ablation, dataset, preset, metric); one line per configuration
    (mean over seeds, band ± std).

    `ssm plot transfer [--n N] [--checkpoint RUN/last.ckpt] [--out FILE.png]`: |G(iω)| of the
    S4D-LegS, S4D-Inv, PTD and exact HiPPO-LegS initialisations (ω = 325.4 marked)."""
    from ssm_cli.results.plot import plot_curves
    from ssm_cli.paths import check_writable

    if str(runs_dir) == "transfer":
        from ssm_cli.results.transfer import plot_transfer
        path = out or Path(f"transfer_N{n}.png")
        try:
            check_writable(path.parent if str(path.parent) else Path("."), "--out folder")
            plot_transfer(n, path, checkpoint)
        except UserError as e:
            fail(e)
        console.print(str(path))
        return

    unreadable: list = []
    try:
        check_writable(out or runs_dir, "--out folder" if out else "runs folder (the plots go there without --out)")
        paths = plot_curves(runs_dir, out, metric, unreadable, format)
    except UserError as e:
        fail(e)
    except OSError as e:  # e.g. the folder became unwritable since the check
        fail(UserError(f"cannot write the plots to {str(out or runs_dir)!r}: {e.strerror or e}"))
    finally:
        warn_unreadable(unreadable)
    if not paths:
        err.print(f"[yellow]no per-epoch {metric} found under {runs_dir}[/]")
    for p in paths:
        console.print(str(p))


export_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Turn run records into other tools' formats.")
app.add_typer(export_app, name="export")


@export_app.command("tensorboard")
def export_tensorboard(
    runs_dir: Path = typer.Argument(Path("outputs"), help="Folder holding the runs (an out_dir; searched recursively)."),
    to: Optional[Path] = typer.Option(None, "--to", help="Folder for the event files (default: RUNS_DIR/tensorboard)."),
) -> None:
    """TensorBoard event files from the runs' records (each epoch's metrics at its step), one folder
    per run at its path under RUNS_DIR: `tensorboard --logdir RUNS_DIR/tensorboard`."""
    from ssm_cli.paths import check_writable
    from ssm_cli.results.export import export_tensorboard as export

    unreadable: list = []
    to = to or runs_dir / "tensorboard"
    try:
        check_writable(to, "--to folder")
        folders = export(runs_dir, to, unreadable)
    except UserError as e:
        fail(e)
    finally:
        warn_unreadable(unreadable)
    if not folders:
        err.print(f"[yellow]no run with per-epoch metrics under {runs_dir}[/]")
    console.print(f"{len(folders)} run(s) exported to {to}", highlight=False)


@app.command("list")
def list_(group: Optional[str] = typer.Argument(None, help="ablation | dataset | model | preset | protocol | ...")) -> None:
    """The ablations, datasets, models, presets (and other config options) that exist."""
    from ssm_cli.cli.list_cmd import list_command

    try:
        list_command(group)
    except UserError as e:
        fail(e)


def _mount_data() -> None:
    from ssm_cli.cli.data_cmd import app as data_app

    app.add_typer(data_app, name="data", help="Datasets: list, where, verify, prepare, generate.")


_mount_data()


def _used_cuda() -> bool:
    """Whether this process initialised CUDA (imports nothing)."""
    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_initialized()


def main() -> None:
    """The ``ssm`` command. A process that used CUDA ends with ``os._exit`` once the command is done
    and its output flushed: the interpreter's own shutdown then took 3 s on an H100 machine after a
    grid (torch.compile's worker pool shut down and joined, CUDA torn down), time a user waits for
    nothing. Everything a command writes (records, checkpoints, tables) is written and closed before
    it returns; the compile workers end themselves when their parent is gone."""
    try:
        app()
        code = 0
    except SystemExit as e:
        code = e.code
    if not _used_cuda():
        sys.exit(code)
    if not isinstance(code, int):  # sys.exit(None) is 0; sys.exit("message") prints it and is 1
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
