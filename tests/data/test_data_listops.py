"""ListOps loader: release tsv files -> fixed-length token ids with the fixed vocabulary."""
from __future__ import annotations

import pytest
import torch

from ssm_cli.data import load_dataset
from ssm_cli.data import lra
from ssm_cli.data.cache import CACHE_FOLDER
from ssm_cli.errors import UserError
from tests.data.lra_fixtures import LISTOPS_EXAMPLES, write_listops

V = {tok: i for i, tok in enumerate(lra.LISTOPS_VOCAB)}


def ids(source: str) -> list[int]:
    """Expected ids: parentheses dropped, every other token looked up in the vocabulary."""
    return [V[t] for t in source.split() if t not in "()"]


def test_vocab_is_fixed_and_complete():
    assert lra.LISTOPS_VOCAB[:3] == ("<pad>", "<unk>", "<eos>")
    assert len(lra.LISTOPS_VOCAB) == 18 and len(set(lra.LISTOPS_VOCAB)) == 18
    for tok in ["[MIN", "[MAX", "[MED", "[SM", "]", *map(str, range(10))]:
        assert tok in V


def test_items_shapes_labels_and_padding(tmp_path):
    rows = write_listops(tmp_path, counts=(6, 3, 3))
    b = load_dataset("listops", tmp_path, download=False)
    assert (len(b.train), len(b.val), len(b.test)) == (6, 3, 3)
    assert b.spec.input == "tokens" and b.spec.vocab_size == 18 and b.spec.d_output == 10
    assert b.spec.seq_len == 2048 and not b.spec.two_tower
    for split, ds in (("train", b.train), ("val", b.val), ("test", b.test)):
        for i, (source, target) in enumerate(rows[split]):
            x, y = ds[i]
            assert x.shape == (2048,) and x.dtype == torch.int64 and y.dtype == torch.int64
            want = ids(source) + [V["<eos>"]]
            assert x[: len(want)].tolist() == want
            assert (x[len(want):] == 0).all()
            assert int(y) == target


def test_known_expression_ids(tmp_path):
    write_listops(tmp_path)
    x, _ = load_dataset("listops", tmp_path, download=False).train[0]
    # ( ( ( [MAX 4 ) 3 ) ] )  ->  [MAX 4 3 ] <eos>
    assert x[:6].tolist() == [V["[MAX"], V["4"], V["3"], V["]"], V["<eos>"], 0]


def test_max_len_truncates_and_eos_optional(tmp_path):
    write_listops(tmp_path)
    b = load_dataset("listops", tmp_path, download=False, max_len=3, append_eos=False)
    x, _ = b.train[2]  # [SM 9 8 7 6 ]
    assert x.tolist() == [V["[SM"], V["9"], V["8"]] and b.spec.seq_len == 3
    x, _ = load_dataset("listops", tmp_path, download=False, max_len=3).train[2]
    assert x.tolist() == [V["[SM"], V["9"], V["<eos>"]]


def test_unknown_option_lists_valid_ones(tmp_path):
    write_listops(tmp_path)
    with pytest.raises(UserError, match=r"unknown option\(s\) l_max .*valid: max_len.*append_eos.*download"):
        load_dataset("listops", tmp_path, l_max=10)


def test_missing_folder_names_path_layout_and_remedies(tmp_path):
    with pytest.raises(UserError) as e:
        load_dataset("listops", tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / "lra" / "listops-1000" / "basic_train.tsv") in msg
    assert "basic_{train,val,test}.tsv" in msg
    assert lra.LRA_RELEASE_URL in msg and "ssm data generate listops" in msg


def test_failed_download_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(lra, "LRA_RELEASE_URL", "http://127.0.0.1:9/lra_release.gz")
    with pytest.raises(UserError, match=r"download failed(.|\n)*127\.0\.0\.1:9"):
        load_dataset("listops", tmp_path, download=True)
    assert not (tmp_path / "lra").exists()


def test_truncated_tsv_is_named(tmp_path):
    write_listops(tmp_path)
    f = tmp_path / "lra" / "listops-1000" / "basic_val.tsv"
    f.write_bytes(f.read_bytes()[:-12])  # cut inside the last expression
    with pytest.raises(UserError, match=r"basic_val\.tsv, line 4"):
        load_dataset("listops", tmp_path, download=False)


def test_bad_header_is_named(tmp_path):
    write_listops(tmp_path)
    f = tmp_path / "lra" / "listops-1000" / "basic_test.tsv"
    f.write_text("Src\tTgt\n7\t7\n")
    with pytest.raises(UserError, match=r"basic_test\.tsv.*header"):
        load_dataset("listops", tmp_path, download=False)


def test_cache_is_reused_and_rebuilt_when_raw_data_changes(tmp_path, monkeypatch):
    write_listops(tmp_path, counts=(6, 3, 3))
    load_dataset("listops", tmp_path, download=False)
    cache = tmp_path / "lra" / "listops-1000" / CACHE_FOLDER
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 1

    calls = []
    real = lra.read_listops_tsv
    monkeypatch.setattr(lra, "read_listops_tsv", lambda p: calls.append(p) or real(p))
    load_dataset("listops", tmp_path, download=False, max_len=100)  # index-time option: same cache
    assert calls == [] and sorted(p.name for p in cache.iterdir()) == entries

    write_listops(tmp_path, counts=(9, 3, 3))
    b = load_dataset("listops", tmp_path, download=False)
    assert len(calls) == 3 and len(b.train) == 9
    assert sorted(p.name for p in cache.iterdir()) != entries and len(list(cache.iterdir())) == 1


def test_examples_are_consistent_with_the_evaluator():
    from ssm_cli.data.listops_gen import evaluate, parse

    for source, target in LISTOPS_EXAMPLES:
        assert evaluate(parse(source)) == target


def test_download_unpacks_the_release(tmp_path, monkeypatch):
    """A (local, file://) release tarball with the doubly nested lra_release/ folder is unpacked
    into data_dir/lra/ and then loaded."""
    import tarfile

    src = tmp_path / "src"
    rows = write_listops(src / "lra_release" / "lra_release", counts=(4, 2, 2))
    (src / "lra_release" / "lra_release" / "lra" / "listops-1000").rename(src / "lra_release" / "lra_release" / "listops-1000")
    archive = tmp_path / "lra_release.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "lra_release", arcname="lra_release")
    monkeypatch.setattr(lra, "LRA_RELEASE_URL", archive.as_uri())
    data_dir = tmp_path / "data"
    b = load_dataset("listops", data_dir)
    assert (data_dir / "lra" / "listops-1000" / "basic_train.tsv").is_file()
    assert len(b.train) == 4 and int(b.train[1][1]) == rows["train"][1][1]
    assert sorted(p.name for p in data_dir.iterdir()) == ["lra"]  # no download leftovers


@pytest.mark.parametrize("bad", [{"max_len": 1}, {"max_len": "2048"}, {"append_eos": "yes"}])
def test_bad_option_values(tmp_path, bad):
    write_listops(tmp_path)
    with pytest.raises(UserError, match=next(iter(bad))):
        load_dataset("listops", tmp_path, download=False, **bad)
