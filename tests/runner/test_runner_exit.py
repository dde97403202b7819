"""How the ``ssm`` command ends (``ssm_cli.cli.main.main``): a normal exit without CUDA, ``os._exit``
with the command's code, output flushed, after a command that used CUDA."""
import subprocess
import sys

import pytest

from ssm_cli.cli import main as cli


def test_without_cuda_the_exit_is_the_normal_one(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ssm", "list"])
    monkeypatch.setattr(cli.os, "_exit", lambda code: pytest.fail("os._exit without CUDA"))
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 0


@pytest.mark.parametrize("argv, code", [(["list"], 0), (["table", "--format", "nope", "."], 2)])
def test_after_cuda_the_process_ends_at_once_with_the_command_code(monkeypatch, capsys, argv, code):
    ended = []
    monkeypatch.setattr(sys, "argv", ["ssm", *argv])
    monkeypatch.setattr(cli, "_used_cuda", lambda: True)
    monkeypatch.setattr(cli.os, "_exit", lambda c: ended.append(c))
    cli.main()
    assert ended == [code]


def test_the_console_script_and_module_run_main():
    from pathlib import Path

    try:
        import tomllib
    except ImportError:  # Python 3.10: the dev extra installs tomli, the same parser
        import tomli as tomllib

    scripts = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ssm"] == "ssm_cli.cli.main:main"
    p = subprocess.run([sys.executable, "-m", "ssm_cli.cli.main", "table", "--format", "nope", "."],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "nope" in p.stderr
    p = subprocess.run([sys.executable, "-m", "ssm_cli", "table", "--format", "nope", "."], capture_output=True, text=True)
    assert p.returncode == 2 and "nope" in p.stderr
