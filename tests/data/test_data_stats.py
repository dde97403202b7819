"""The release's statistics (docs/lra-data.md) on generated copies: `ssm data verify` passes and
reports them, the generators match them within tolerance on a small sample, and a copy that breaks
the release's bounds fails."""
from __future__ import annotations

import csv

import pytest

from ssm_cli.data import listops_gen, load_dataset, pathfinder_gen
from ssm_cli.data.checks import verify
from ssm_cli.data.stats import LISTOPS_MAX_DEPTH, LISTOPS_MAX_LEN, LISTOPS_MIN_LEN


def stats(report) -> dict:
    return {c.what: c for c in report.checks}


def number(detail: str, key: str) -> float:
    return float(detail.split(f"{key} ")[1].split(",")[0].split(" ")[0].rstrip("%"))


@pytest.fixture(scope="module")
def listops_copy(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("lo")
    listops_gen.generate(data_dir / "lra", n_train=60, n_val=10, n_test=10, seed=11)
    return data_dir


def test_generated_listops_has_the_release_statistics(listops_copy):
    report = verify("listops", load_dataset("listops", listops_copy, download=False))
    s = stats(report)
    assert not report.failed, [c for c in report.checks if c.status == "fail"]
    assert s["counts"].status == "warn" and s["counts"].detail.startswith("60/10/10")  # a smaller copy: warns
    for split in ("train", "val", "test"):
        assert s[f"{split} lengths"].status == "ok"
        assert LISTOPS_MIN_LEN < number(s[f"{split} lengths"].detail, "min")
        assert number(s[f"{split} lengths"].detail, "max") < LISTOPS_MAX_LEN
        assert number(s[f"{split} depth"].detail, "max") == LISTOPS_MAX_DEPTH  # long trees reach the limit
        shares = [float(p.split()[1].rstrip("%")) for p in s[f"{split} operators"].detail.split(" (")[0].split(", ")]
        assert len(shares) == 4 and all(abs(x - 25) < 3 for x in shares)  # ~10 operators per 40 tokens
    # arguments: randint(2, 10) per operator, mean 6 (a 60-expression sample: +- 0.2)
    assert abs(float(s["train arguments"].detail.split()[0]) - 6) < 0.2


def test_listops_breaking_the_release_bounds_fails(tmp_path):
    folder = tmp_path / "lra" / "listops-1000"
    folder.mkdir(parents=True)
    deep = 3
    for _ in range(LISTOPS_MAX_DEPTH + 1):  # one level deeper than the release allows
        deep = ("[MAX", [deep, 1])
    for split in ("train", "val", "test"):
        with open(folder / f"basic_{split}.tsv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerows([["Source", "Target"], [listops_gen.to_source(deep), listops_gen.evaluate(deep)]])
    s = stats(verify("listops", load_dataset("listops", tmp_path, download=False)))
    assert s["train depth"].status == "fail" and "max 12" in s["train depth"].detail
    assert s["train lengths"].status == "warn"  # 34 tokens: shorter than the release's


def test_generated_pathfinder_has_the_release_statistics(tmp_path):
    pathfinder_gen.generate(tmp_path / "lra", size=32, n_samples=40, seed=4, images_per_folder=20)
    report = verify("pathfinder", load_dataset("pathfinder", tmp_path, download=False))
    s = stats(report)
    assert not report.failed
    assert s["image size"].status == "ok" and s["image size"].detail.startswith("32x32")
    assert s["label balance"].detail.startswith("50.00% connected")
    assert s["images"].status == "warn" and s["images"].detail.startswith("40 ")
    mean = number(s["pixel intensity"].detail, "mean")
    assert 5 < mean < 60  # thin paddles on black: a few percent of the pixels carry ink
    # both classes draw two long snakes: the ink does not give the label away
    pos, neg = (number(s[f"intensity, {k}"].detail, "mean") for k in ("connected", "not connected"))
    assert abs(pos - neg) < 0.15 * mean


def test_listops_workers_do_not_change_the_data(tmp_path, monkeypatch):
    monkeypatch.setattr(listops_gen, "CHUNK", 3)  # 4 chunks: the pool is used
    a = listops_gen.generate(tmp_path / "a", n_train=6, n_val=2, n_test=2, seed=5, min_len=20, max_len=300)
    b = listops_gen.generate(tmp_path / "b", n_train=6, n_val=2, n_test=2, seed=5, min_len=20, max_len=300, workers=2)
    for split in ("train", "val", "test"):
        assert (a / f"basic_{split}.tsv").read_bytes() == (b / f"basic_{split}.tsv").read_bytes()


def test_data_present_exit_codes(tmp_path, listops_copy):
    from typer.testing import CliRunner

    from ssm_cli.cli.data_cmd import app

    runner = CliRunner()
    assert runner.invoke(app, ["present", "listops", "--data-dir", str(listops_copy)]).exit_code == 0
    missing = runner.invoke(app, ["present", "sc35", "--data-dir", str(tmp_path / "none")], env={"COLUMNS": "200"})
    assert missing.exit_code == 1 and "missing" in missing.output
