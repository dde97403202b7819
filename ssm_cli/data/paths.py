"""Where raw datasets live, and the two checks every loader makes: its options and its files.

``data_dir`` holds one folder per source (``cifar10/``, ``mnist/``, ``speech_commands/``,
``bidmc/``, ``lra/``, ...). The default is ``$SSM_DATA`` or ``./data``; this module is the one
place that says so.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ssm_cli.errors import UserError

ENV_VAR = "SSM_DATA"


def default_data_dir() -> Path:
    """``$SSM_DATA`` when set, else ``./data``."""
    return Path(os.environ.get(ENV_VAR) or "data")


def check_options(dataset: str, options: dict, valid: Iterable[str]) -> None:
    """Raise UserError when ``options`` holds a key the loader of ``dataset`` does not know."""
    valid = sorted(valid)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UserError(
            f"unknown option(s) {', '.join(unknown)} for dataset {dataset!r}; "
            f"valid: {', '.join(valid) or '(none)'}"
        )


def missing_data(dataset: str, looked_in: list[Path], layout: str, remedy: str) -> UserError:
    """The error for absent data: where we looked, what layout we expect, how to obtain it."""
    where = "\n".join(f"  {p.resolve() if not p.is_absolute() else p}" for p in looked_in)
    return UserError(
        f"dataset {dataset!r} not found. Looked in:\n{where}\n"
        f"Expected layout:\n{_indent(layout)}\nTo obtain it:\n{_indent(remedy)}"
    )


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.strip().splitlines())
