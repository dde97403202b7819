"""Records turned into other formats: TensorBoard event files (``ssm export tensorboard``)."""
from __future__ import annotations

from pathlib import Path

from ssm_cli.results.table import load_records
from ssm_cli.train.loggers import require, write_epoch


def export_tensorboard(runs_dir: Path, to: Path, unreadable: list | None = None) -> list[Path]:
    """Event files from the records under ``runs_dir``: one folder per run under ``to``, at the
    run's path relative to ``runs_dir``, each epoch's metrics at its step. Returns the folders."""
    require("tensorboard", "tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    runs_dir, to = Path(runs_dir), Path(to)
    written = []
    for record in load_records(runs_dir, unreadable):
        epochs = record.get("epochs") or []
        run_dir = Path(record.get("run_dir") or "")
        if not epochs or not run_dir.parts:
            continue
        try:
            rel = run_dir.resolve().relative_to(runs_dir.resolve())
        except ValueError:  # a record copied from elsewhere: file it by its identity
            rel = Path(str(record.get("ablation")), str(record.get("dataset")), str(record.get("variant")),
                       f"seed{record.get('seed')}-{record.get('config_hash')}")
        folder = to / rel
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("events.out.tfevents.*"):  # an export replaces the previous one
            old.unlink()
        writer = SummaryWriter(str(folder))
        for e in epochs:
            write_epoch(writer, e)
        writer.close()
        written.append(folder)
    return written
