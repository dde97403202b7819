import os
import subprocess
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def ssm(tmp_path):
    """Run the real `ssm` command line in a subprocess; returns CompletedProcess (text)."""

    def run(*args: str, check: bool = True, timeout: float = 300, env: dict | None = None):
        e = {**os.environ, "COLUMNS": "200", "SSM_DATA": str(tmp_path / "data"), **(env or {})}
        p = subprocess.run([sys.executable, "-m", "ssm_cli.cli.main", *args], cwd=tmp_path,
                           capture_output=True, text=True, timeout=timeout, env=e)
        if check and p.returncode != 0:
            raise AssertionError(f"ssm {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    return run
