"""LRA Text loader: aclImdb review files -> UTF-8 byte ids (byte + 2), eos 1, padding 0."""
from __future__ import annotations

import pytest
import torch

from ssm_cli.data import load_dataset
from ssm_cli.data import lra
from ssm_cli.data.cache import CACHE_FOLDER
from ssm_cli.errors import UserError
from tests.data.lra_fixtures import write_imdb


def expected(data: bytes, max_len: int = 4096, eos: bool = True) -> list[int]:
    ids = [b + 2 for b in data[: max_len - eos]] + ([1] if eos else [])
    return ids + [0] * (max_len - len(ids))


def test_items_are_byte_ids_with_labels(tmp_path):
    raw = write_imdb(tmp_path, per_class=3)
    b = load_dataset("lra_text", tmp_path, download=False)
    assert b.spec.input == "tokens" and b.spec.vocab_size == 258 and b.spec.seq_len == 4096
    assert (len(b.train), len(b.val), len(b.test)) == (6, 6, 6)
    assert b.val is b.test  # the LRA protocol: test doubles as validation
    for split, ds in (("train", b.train), ("test", b.test)):
        labels = []
        for i, (data, label) in enumerate(raw[split]):
            x, y = ds[i]
            assert x.shape == (4096,) and x.dtype == torch.int64 and y.dtype == torch.int64
            assert x.tolist() == expected(data)
            labels.append(int(y))
        assert labels == [0, 0, 0, 1, 1, 1]  # neg = 0, pos = 1


def test_non_ascii_text_is_utf8_bytes(tmp_path):
    raw = write_imdb(tmp_path)
    x, _ = load_dataset("lra_text", tmp_path, download=False).train[0]
    data = raw["train"][0][0]
    assert "Caf\u00e9".encode() in data
    assert x[: len(data)].tolist() == [b + 2 for b in data]  # é is two tokens (0xC3 0xA9)
    assert int(x.max()) <= 257


def test_long_review_truncated_with_eos_kept(tmp_path):
    raw = write_imdb(tmp_path, long_len=5000)
    ds = load_dataset("lra_text", tmp_path, download=False).train
    i = next(i for i, (d, _) in enumerate(raw["train"]) if len(d) >= 5000)
    x, _ = ds[i]
    assert int(x[-1]) == 1 and (x > 0).all()
    x, _ = load_dataset("lra_text", tmp_path, download=False, max_len=64, append_eos=False).train[i]
    assert x.tolist() == expected(raw["train"][i][0], 64, eos=False)


def test_unknown_option(tmp_path):
    write_imdb(tmp_path)
    with pytest.raises(UserError, match=r"unknown option\(s\) level.*valid: max_len"):
        load_dataset("lra_text", tmp_path, level="char")


def test_missing_folder_names_path_and_remedy(tmp_path):
    with pytest.raises(UserError) as e:
        load_dataset("lra_text", tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / "aclImdb") in msg and "{train,test}/{pos,neg}/*.txt" in msg
    assert lra.IMDB_URL in msg


def test_failed_download_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(lra, "IMDB_URL", "http://127.0.0.1:9/aclImdb_v1.tar.gz")
    with pytest.raises(UserError, match=r"download failed(.|\n)*127\.0\.0\.1:9"):
        load_dataset("lra_text", tmp_path)


def test_cache_rebuilt_when_a_review_is_added(tmp_path):
    write_imdb(tmp_path, per_class=2)
    assert len(load_dataset("lra_text", tmp_path, download=False).train) == 4
    cache = tmp_path / "aclImdb" / CACHE_FOLDER
    before = [p.name for p in cache.iterdir()]
    assert len(load_dataset("lra_text", tmp_path, download=False).train) == 4
    assert [p.name for p in cache.iterdir()] == before
    (tmp_path / "aclImdb" / "train" / "pos" / "99_9.txt").write_text("new")
    assert len(load_dataset("lra_text", tmp_path, download=False).train) == 5
    assert [p.name for p in cache.iterdir()] != before


def test_download_unpacks_aclimdb(tmp_path, monkeypatch):
    import tarfile

    raw = write_imdb(tmp_path / "src", per_class=2)
    archive = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "aclImdb", arcname="aclImdb")
    monkeypatch.setattr(lra, "IMDB_URL", archive.as_uri())
    b = load_dataset("lra_text", tmp_path / "data")
    assert len(b.train) == 4 and b.train[0][0][:5].tolist() == [c + 2 for c in raw["train"][0][0][:5]]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["aclImdb"]
