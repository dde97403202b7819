"""``ssm list [GROUP]``: every option of every config group, with its first comment line."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ssm_cli.config import CONF_DIR, group_options
from ssm_cli.errors import UserError

console = Console()


def describe(path) -> str:
    """The first sentence of a config file's leading comment, or its ``title``."""
    block: list[str] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("# @package"):
            continue
        if line.startswith("#"):
            block.append(line.lstrip("# ").strip())
            continue
        if block:
            break
        if line.startswith("title:"):
            return line.split(":", 1)[1].strip()
    text = " ".join(block)
    return text.split(". ")[0].rstrip(".") if text else ""


def list_command(group: str | None) -> None:
    groups = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir())
    if group is not None and group not in groups:
        raise UserError(f"unknown config group {group!r}; valid: {', '.join(groups)}")
    for g in [group] if group else groups:
        t = Table(title=g, title_justify="left", show_header=False, box=None)
        t.add_column("option", style="bold cyan")
        t.add_column("description")
        for name in group_options(g):
            t.add_row(name, describe(CONF_DIR / g / f"{name}.yaml"))
        console.print(t)
