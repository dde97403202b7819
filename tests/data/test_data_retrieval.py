"""LRA Retrieval loader: AAN pair tsv files -> two-tower (2, L) byte ids."""
from __future__ import annotations

import pytest
import torch

from ssm_cli.data import load_dataset
from ssm_cli.data.cache import CACHE_FOLDER
from ssm_cli.errors import UserError
from tests.data.lra_fixtures import write_aan, write_tsv


def expected(data: bytes, max_len: int = 4000) -> list[int]:
    ids = [b + 2 for b in data[: max_len - 1]] + [1]
    return ids + [0] * (max_len - len(ids))


def test_two_tower_items(tmp_path):
    raw = write_aan(tmp_path, counts=(4, 2, 2))
    b = load_dataset("lra_retrieval", tmp_path, download=False)
    assert b.spec.two_tower and b.spec.input == "tokens" and b.spec.vocab_size == 258
    assert b.spec.seq_len == 4000 and b.spec.d_output == 2
    assert (len(b.train), len(b.val), len(b.test)) == (4, 2, 2)
    for split, ds in (("train", b.train), ("val", b.val), ("test", b.test)):
        for i, (t1, t2, label) in enumerate(raw[split]):
            x, y = ds[i]
            assert x.shape == (2, 4000) and x.dtype == torch.int64 and y.dtype == torch.int64
            assert x[0].tolist() == expected(t1) and x[1].tolist() == expected(t2)
            assert int(y) == label


def test_val_comes_from_the_eval_file(tmp_path):
    raw = write_aan(tmp_path, counts=(4, 3, 2))
    b = load_dataset("lra_retrieval", tmp_path, download=False)
    assert len(b.val) == 3 and b.val[0][0][0].tolist() == expected(raw["val"][0][0])


def test_long_document_truncated(tmp_path):
    raw = write_aan(tmp_path, long_len=4500)
    assert len(raw["train"][0][1]) > 4000
    x, _ = load_dataset("lra_retrieval", tmp_path, download=False).train[0]
    assert int(x[1, -1]) == 1 and (x[1] > 0).all()
    x, _ = load_dataset("lra_retrieval", tmp_path, download=False, max_len=16).train[0]
    assert x.shape == (2, 16)


def test_corrupt_row_is_named(tmp_path):
    write_aan(tmp_path)
    f = tmp_path / "lra" / "tsv_data" / "new_aan_pairs.test.tsv"
    with open(f, "a", encoding="utf-8") as fh:
        fh.write("1.0\tP1\tP2\tonly one text\n")
    with pytest.raises(UserError, match=r"new_aan_pairs\.test\.tsv, line 3"):
        load_dataset("lra_retrieval", tmp_path, download=False)


def test_bad_label_is_named(tmp_path):
    write_aan(tmp_path)
    write_tsv(tmp_path / "lra" / "tsv_data" / "new_aan_pairs.eval.tsv", [("2", "a", "b", "x", "y")])
    with pytest.raises(UserError, match=r"new_aan_pairs\.eval\.tsv, line 1.*label 0 or 1"):
        load_dataset("lra_retrieval", tmp_path, download=False)


def test_missing_file_names_path(tmp_path):
    write_aan(tmp_path)
    (tmp_path / "lra" / "tsv_data" / "new_aan_pairs.eval.tsv").unlink()
    with pytest.raises(UserError) as e:
        load_dataset("lra_retrieval", tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / "lra" / "tsv_data" / "new_aan_pairs.eval.tsv") in msg
    assert "tsv_data/new_aan_pairs.{train,eval,test}.tsv" in msg and "lra_release.gz" in msg


def test_cache_reuse_and_invalidation(tmp_path):
    write_aan(tmp_path, counts=(4, 2, 2))
    load_dataset("lra_retrieval", tmp_path, download=False)
    cache = tmp_path / "lra" / "tsv_data" / CACHE_FOLDER
    before = [p.name for p in cache.iterdir()]
    load_dataset("lra_retrieval", tmp_path, download=False)
    assert [p.name for p in cache.iterdir()] == before
    write_aan(tmp_path, counts=(6, 2, 2))
    assert len(load_dataset("lra_retrieval", tmp_path, download=False).train) == 6
    assert [p.name for p in cache.iterdir()] != before


def test_bytes_literal_fields_are_unescaped():
    from ssm_cli.data.lra import aan_text_bytes

    assert aan_text_bytes("b'R\\xc3\\xa9sum\\xc3\\xa9\\n'") == "Résumé\n".encode()
    assert aan_text_bytes('b"it\'s"') == b"it's"
    assert aan_text_bytes("plain b'text'") == b"plain b'text'"
    assert aan_text_bytes("b'broken") == b"b'broken"
