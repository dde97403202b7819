"""The installed (non-editable) wheel works outside the checkout: its configs ship inside it.

Builds the wheel from a copy of the sources, installs it without dependencies into a fresh venv
that reuses this environment's packages (a ``.pth`` line; the editable install of this checkout is
not seen there), and runs ``ssm list`` and a smoke run from a folder outside the checkout."""
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_runs_from_anywhere(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src / "pyproject.toml")
    # copytree follows the link ssm_cli/conf -> ../conf: the copy holds the configs themselves
    shutil.copytree(REPO / "ssm_cli", src / "ssm_cli", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True, timeout=120)
    [wheel] = (tmp_path / "dist").glob("ssm_cli-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], check=True,
                   capture_output=True, timeout=120)
    where = tmp_path / "elsewhere"
    where.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SSM_DATA": str(tmp_path / "data"), "COLUMNS": "200"}
    found = subprocess.run([str(python), "-c", "import ssm_cli.config as c; print(c.__file__, c.CONF_DIR)"],
                           cwd=where, env=env, check=True, capture_output=True, text=True).stdout
    assert found.startswith(str(venv)) and str(REPO) not in found
    ssm = str(venv / "bin" / "ssm")
    listed = subprocess.run([ssm, "list"], cwd=where, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "init" in listed.stdout and "scifar" in listed.stdout and "smoke" in listed.stdout
    run = subprocess.run([ssm, "run", "preset=smoke", "out_dir=runs",
                          "dataset.options.n_train=64", "dataset.options.n_val=32", "dataset.options.n_test=32"],
                         cwd=where, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(list((where / "runs").rglob("record.json"))) == 1
