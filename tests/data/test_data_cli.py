"""``ssm data`` (list, where, verify, prepare, generate) and the download helpers, offline."""
from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ssm_cli.data import cifar, download
from ssm_cli.cli.data_cmd import app
from ssm_cli.data.paths import ENV_VAR, default_data_dir
from ssm_cli.errors import UserError
from tests.data.fixtures import write_bidmc_ts, write_cifar_pickles, write_mnist_idx, write_speech_commands

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar_pickles(root, n_train_per_batch=10, n_test=10)
    write_mnist_idx(root, n_train=20, n_test=10)
    write_speech_commands(root, words=("yes", "no"), n_per_word=5)
    write_bidmc_ts(root, n_train=6, n_test=2, length=200, targets=("HR",))
    return root


def test_default_data_dir_follows_the_environment(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert default_data_dir() == Path("data")
    monkeypatch.setenv(ENV_VAR, "/somewhere/else")
    assert default_data_dir() == Path("/somewhere/else")


def test_list_reports_present_missing_and_generated(data_root):
    r = invoke("list", "--data-dir", str(data_root))
    assert r.exit_code == 0, r.output
    rows = {line.split("│")[1].strip(): line for line in r.output.splitlines() if line.count("│") > 3}
    assert "present" in rows["scifar"] and "present" in rows["sc35"] and "present" in rows["bidmc"]
    assert "missing" in rows["listops"] and "missing" in rows["pathx"]
    assert "generated" in rows["synthetic"]
    assert str(data_root / "mnist") in rows["smnist"]


def test_where_names_the_exact_path_and_remedy(data_root, tmp_path):
    r = invoke("where", "sc35", "--data-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert str((tmp_path / "speech_commands" / "speech_commands_v0.02").resolve()) in r.output
    assert "missing" in r.output and "ssm data prepare sc35" in r.output and "validation_list.txt" in r.output
    r = invoke("where", "scifar", "--data-dir", str(data_root))
    assert "present" in r.output and "cifar-10-batches-py" in r.output
    r = invoke("where", "nope")
    assert r.exit_code == 2 and "unknown dataset 'nope'" in r.output


@pytest.mark.parametrize("name", ["scifar", "lra_image", "smnist", "psmnist", "sc35", "sc10", "bidmc"])
def test_verify_a_small_copy_warns_but_passes(data_root, name):
    r = invoke("verify", name, "--data-dir", str(data_root), "-o", "val_split=0.2" if name not in ("sc35", "sc10") else "version=v0.02")
    assert r.exit_code == 0, r.output
    assert "split sizes" in r.output and "FAIL" not in r.output
    if name in ("scifar", "sc35", "smnist"):
        assert "warning" in r.output  # fewer items than the release
    if name in ("sc35", "sc10"):
        assert "test_8k x" in r.output and "(8000, 1) float32" in r.output


def test_verify_reports_missing_data_and_bad_options_with_exit_2(tmp_path, data_root):
    r = invoke("verify", "sc35", "--data-dir", str(tmp_path))
    assert r.exit_code == 2 and "not found" in r.output and str(tmp_path) in r.output
    r = invoke("verify", "scifar", "--data-dir", str(data_root), "-o", "bogus=1")
    assert r.exit_code == 2 and "unknown option(s) bogus" in r.output
    r = invoke("verify", "scifar", "--data-dir", str(data_root), "-o", "novalue")
    assert r.exit_code == 2 and "key=value" in r.output


def test_prepare_builds_the_cache_of_present_data(data_root):
    r = invoke("prepare", "smnist", "--data-dir", str(data_root))
    assert r.exit_code == 0, r.output
    assert "ready" in r.output and "18 train / 2 val / 10 test" in r.output
    assert any((data_root / "mnist" / ".ssm_cache").iterdir())


def _pickles_archive(tmp_path: Path) -> Path:
    src = write_cifar_pickles(tmp_path / "src", n_train_per_batch=4, n_test=4)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar10" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


def test_prepare_downloads_checks_and_unpacks(tmp_path, monkeypatch):
    archive = _pickles_archive(tmp_path)
    monkeypatch.setattr(cifar, "URL", archive.as_uri())  # a local "server": same code path as https
    monkeypatch.setattr(cifar, "MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    root = tmp_path / "data"
    r = invoke("prepare", "scifar", "--data-dir", str(root), "-o", "val_split=2")
    assert r.exit_code == 0, r.output
    assert (root / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    assert not (root / "cifar10" / "cifar-10-python.tar.gz").exists()  # the archive is removed once unpacked
    assert "18 train / 2 val / 4 test" in r.output


def test_download_failure_says_what_to_do_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "URL", (tmp_path / "nowhere.tar.gz").as_uri())
    r = invoke("prepare", "scifar", "--data-dir", str(tmp_path / "data"))
    assert r.exit_code == 2
    assert "download of file://" in r.output and "failed" in r.output
    assert "Without network" in r.output and str(tmp_path / "data" / "cifar10") in r.output
    assert not list((tmp_path / "data" / "cifar10").glob("*.part"))


def test_fetch_rejects_a_wrong_checksum(tmp_path):
    src = tmp_path / "file.bin"
    src.write_bytes(b"payload")
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(UserError, match="corrupt: sha256"):
        download.fetch(src.as_uri(), dest, checksum=("sha256", "0" * 64))
    assert not dest.exists()
    good = hashlib.sha256(b"payload").hexdigest()
    assert download.fetch(src.as_uri(), dest, checksum=("sha256", good)).read_bytes() == b"payload"


def test_extract_names_a_corrupt_archive(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(UserError, match="bad.tar.gz is not a readable archive"):
        download.extract(bad, tmp_path / "x")


def test_generate_listops_writes_the_release_layout(tmp_path):
    r = invoke("generate", "listops", "--data-dir", str(tmp_path), "--n-train", "3", "--n-val", "1", "--n-test", "1")
    assert r.exit_code == 0, r.output
    folder = tmp_path / "lra" / "listops-1000"
    assert {p.name for p in folder.glob("basic_*.tsv")} == {"basic_train.tsv", "basic_val.tsv", "basic_test.tsv"}
    assert len((folder / "basic_train.tsv").read_text().splitlines()) == 4  # header + 3


def test_generate_pathfinder_and_bad_choices(tmp_path):
    pytest.importorskip("ssm_cli.data.pathfinder_gen")
    r = invoke("generate", "pathfinder", "--out", str(tmp_path / "lra"), "--n-samples", "4")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "lra" / "pathfinder32" / "curv_contour_length_14" / "metadata").is_dir()
    r = invoke("generate", "pathfinder", "--size", "64", "--out", str(tmp_path))
    assert r.exit_code == 2 and "valid: 32, 128" in r.output
    r = invoke("generate", "mazes")
    assert r.exit_code == 2 and "valid: listops, pathfinder" in r.output


def test_prepare_generate_only_for_generated_datasets(data_root):
    r = invoke("prepare", "scifar", "--generate", "--data-dir", str(data_root))
    assert r.exit_code == 2 and "scifar has no generator" in r.output and "listops" in r.output
