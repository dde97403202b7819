"""``ssm data``: see which datasets are on disk, where they belong, fetch or generate them, check them.

    ssm data list                         every dataset: present / missing / generated, size, where
    ssm data where sc35                   the exact folder and layout expected, and how to get it
    ssm data prepare scifar               download (or generate) the raw data, then build the cache
    ssm data verify scifar                load it and check counts, shapes and labels (listops, pathfinder:
                                          also the release's statistics, docs/lra-data.md)
    ssm data present sc35                 exit code 0 if its files are there, 1 if not
    ssm data generate listops --n-train 1000

Every command takes ``--data-dir`` (default ``$SSM_DATA`` or ``./data``). Loader options are given
as ``-o key=value`` (repeatable), the same keys as ``dataset.options`` in the config.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from ssm_cli.data.paths import default_data_dir
from ssm_cli.data.registry import DATASETS, load_dataset
from ssm_cli.errors import UserError, check_choice

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Datasets: list, locate, prepare, verify, generate.")
console = Console()
err = Console(stderr=True)

DATA_DIR_HELP = "Folder holding one subfolder per data source (default: $SSM_DATA or ./data)."


def _data_dir(value: Optional[Path]) -> Path:
    return Path(value) if value is not None else default_data_dir()


def _fail(e: UserError) -> None:
    err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)  # paths stay whole, copyable
    raise typer.Exit(2)


def _parse_options(pairs: Optional[List[str]]) -> dict:
    """``["val_split=0.2", "tokenize=true"]`` -> ``{"val_split": 0.2, "tokenize": True}`` (YAML scalars)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"option {pair!r} is not key=value")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def _check_name(name: str) -> None:
    check_choice("dataset", name, DATASETS)


def _known(name: str) -> None:
    """``_check_name``, printing the error and exiting 2 when the name is not a dataset."""
    try:
        _check_name(name)
    except UserError as e:
        _fail(e)


@app.command("list")
def list_cmd(data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP)) -> None:
    """Every dataset the runner knows: present / missing / generated, size on disk, where."""
    from ssm_cli.data.checks import EXPECTED, disk_size, human, locate

    root = _data_dir(data_dir)
    table = Table(title=f"datasets under {root}")
    for col in ("dataset", "status", "size"):
        table.add_column(col, no_wrap=True)
    table.add_column("where", overflow="fold")
    table.add_column("what")
    for name, info in DATASETS.items():
        if not info.source:
            table.add_row(name, "[cyan]generated[/]", "-", "(in-process)", info.summary)
            continue
        found = locate(name, root)
        if found is None:
            expected = EXPECTED[name].paths[0] if EXPECTED[name].paths else info.source
            table.add_row(name, "[red]missing[/]", "-", str(root / expected), info.summary)
        else:
            table.add_row(name, "[green]present[/]", human(disk_size(found)), str(found), info.summary)
    console.print(table)
    console.print("`ssm data where NAME` shows the layout and how to obtain a missing dataset.", highlight=False)


@app.command()
def where(
    name: str = typer.Argument(..., help="Dataset name (see `ssm data list`)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
) -> None:
    """The exact path and layout a dataset is expected in, and how to obtain it."""
    from ssm_cli.data.checks import EXPECTED, locate

    _known(name)
    root, exp, info = _data_dir(data_dir), EXPECTED[name], DATASETS[name]
    console.print(f"[bold]{name}[/]: {info.summary}", highlight=False)
    if not info.source:
        console.print("generated in-process; no files needed.")
        return
    found = locate(name, root)
    console.print(f"expected under: {(root / exp.paths[0]).resolve() if exp.paths else root.resolve()}", highlight=False)
    console.print(f"layout:         {exp.layout}", highlight=False)
    console.print("status:         " + (f"[green]present[/] at {found}" if found else "[red]missing[/]"), highlight=False)
    console.print("to obtain it:   " + exp.obtain.replace("\n", "\n                "), highlight=False)
    if exp.notes:
        console.print(f"notes:          {exp.notes}", highlight=False)


@app.command()
def verify(
    name: str = typer.Argument(..., help="Dataset name (see `ssm data list`)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    option: Optional[List[str]] = typer.Option(None, "--option", "-o", help="Loader option key=value (repeatable)."),
) -> None:
    """Load a dataset (without downloading) and check counts, shapes and label ranges.

    Exit code 0 when every check passes or only warns (e.g. a smaller copy), 1 when one fails."""
    from ssm_cli.data.checks import verify as run_checks

    try:
        _check_name(name)
        options = _parse_options(option)
        if DATASETS[name].source and "download" not in options:
            options["download"] = False  # verify checks what is there; `prepare` downloads
        bundle = load_dataset(name, _data_dir(data_dir), **options)
    except UserError as e:
        _fail(e)
    report = run_checks(name, bundle)
    table = Table(title=f"verify {name}")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    style = {"ok": "[green]ok[/]", "warn": "[yellow]warning[/]", "fail": "[red]FAIL[/]"}
    for c in report.checks:
        table.add_row(c.what, style[c.status], c.detail)
    console.print(table)
    spec = bundle.spec
    console.print(f"spec: L={spec.seq_len}, d_input={spec.d_input}, d_output={spec.d_output}, input={spec.input}"
                  f"{f', vocab={spec.vocab_size}' if spec.vocab_size else ''}, task={spec.task}, metric={spec.metric}", highlight=False)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def present(
    name: str = typer.Argument(..., help="Dataset name (see `ssm data list`)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
) -> None:
    """Exit code 0 when the dataset's raw files are on disk (or it needs none), 1 when not (for scripts)."""
    from ssm_cli.data.checks import locate

    _known(name)
    found = locate(name, _data_dir(data_dir)) if DATASETS[name].source else True
    if not found:
        console.print(f"{name}: missing under {_data_dir(data_dir)} (`ssm data where {name}` says how to get it)", highlight=False)
        raise typer.Exit(1)
    console.print(f"{name}: present" + (f" at {found}" if found is not True else ""), highlight=False)


@app.command()
def prepare(
    name: str = typer.Argument(..., help="Dataset name (see `ssm data list`)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    option: Optional[List[str]] = typer.Option(None, "--option", "-o", help="Loader option key=value (repeatable)."),
    generate_: bool = typer.Option(False, "--generate", help="listops/pathfinder/pathx: generate the data (default sizes) instead of downloading the LRA release."),
) -> None:
    """Download the raw data when missing (or generate it, with --generate), then build the cache."""
    from ssm_cli.data.checks import EXPECTED, locate

    root = _data_dir(data_dir)
    try:
        _check_name(name)
        options = _parse_options(option)
        if not DATASETS[name].source:
            console.print(f"{name} is generated in-process; nothing to prepare.")
            return
        if generate_:
            gen = EXPECTED[name].generator
            if gen is None:
                raise UserError(f"{name} has no generator; generated: {', '.join(n for n, e in EXPECTED.items() if e.generator)}")
            if locate(name, root) is None:
                _run_generator(gen, root / "lra", size=128 if name == "pathx" else 32)
            options.setdefault("download", False)
        _download(name, root, options)
        try:
            bundle = load_dataset(name, root, **options)
        except UserError as e:
            gen = EXPECTED[name].generator
            if gen and locate(name, root) is None:
                raise UserError(f"{e}\nOffline? Generate it instead: ssm data prepare {name} --generate") from None
            raise
    except UserError as e:
        _fail(e)
    found = locate(name, root)
    console.print(f"[green]ready[/]: {name} at {found}: {len(bundle.train)} train / {len(bundle.val)} val / {len(bundle.test)} test", highlight=False)


def _download(name: str, root: Path, options: dict) -> None:
    """Fetch the raw files of one of the datasets whose download lives in this package (with progress bars)."""
    if options.get("download") is False:
        return
    if name in ("scifar", "lra_image"):
        from ssm_cli.data import cifar

        if cifar.locate(root) is None:
            cifar.prepare(root)
    elif name in ("smnist", "psmnist"):
        from ssm_cli.data import mnist

        if mnist.locate(root) is None:
            mnist.prepare(root)
    elif name in ("sc35", "sc10"):
        from ssm_cli.data import speech_commands as sc

        version = options.get("version", "v0.02")
        check_choice("version", version, sc.WORDS)
        if sc.locate(root, version) is None:
            sc.prepare(root, version)
    elif name == "bidmc":
        from ssm_cli.data import bidmc

        targets = [options["target"]] if "target" in options else list(bidmc.TARGETS)
        for target in targets:
            check_choice("target", target, bidmc.TARGETS)
            if bidmc.locate(root, target) is None:
                bidmc.prepare(root, target)
    # other datasets download inside their loaders (option download)


@app.command()
def generate(
    task: str = typer.Argument(..., help="listops | pathfinder"),
    size: int = typer.Option(32, "--size", help="pathfinder image side: 32 (Pathfinder) or 128 (Path-X)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output root (default: <data-dir>/lra)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    n_train: Optional[int] = typer.Option(None, "--n-train", help="listops: training examples (default 96000)."),
    n_val: Optional[int] = typer.Option(None, "--n-val", help="listops: validation examples (default 2000)."),
    n_test: Optional[int] = typer.Option(None, "--n-test", help="listops: test examples (default 2000)."),
    n_samples: Optional[int] = typer.Option(None, "--n-samples", help="pathfinder: images (default: the generator's)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the output is deterministic given it."),
    workers: int = typer.Option(0, "--workers", help="Processes (0: one per CPU core); the output does not depend on it."),
) -> None:
    """Generate LRA ListOps or Pathfinder/Path-X in the release layout (no download needed)."""
    out_root = out if out is not None else _data_dir(data_dir) / "lra"
    workers = workers if workers > 0 else (os.cpu_count() or 1)
    try:
        counts = {k: v for k, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("n_samples", n_samples)) if v is not None}
        folder = _run_generator(task, out_root, size=size, seed=seed, workers=workers, **counts)
    except UserError as e:
        _fail(e)
    console.print(f"[green]wrote[/] {folder}", highlight=False)


def _run_generator(task: str, out_root: Path, size: int = 32, seed: int = 0, workers: int = 1, **counts) -> Path:
    """Call the ListOps or Pathfinder generator (imported only now: they are not needed to load data)."""
    check_choice("generator", task, ("listops", "pathfinder"))
    if task == "listops":
        from ssm_cli.data import listops_gen

        listops_counts = {k: v for k, v in counts.items() if k in ("n_train", "n_val", "n_test")}
        return listops_gen.generate(out_root, seed=seed, workers=workers, progress=True, **listops_counts)
    check_choice("pathfinder size", size, (32, 128))
    from ssm_cli.data import pathfinder_gen

    extra = {"n_samples": counts["n_samples"]} if "n_samples" in counts else {}
    return pathfinder_gen.generate(out_root, size=size, seed=seed, workers=workers, progress=True, **extra)
