"""Speech Commands loaders (sc35, sc10) on WAV fixtures in the release layout."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from ssm_cli.data import load_dataset
from ssm_cli.data.cache import CACHE_FOLDER
from ssm_cli.data.speech_commands import SC10_WORDS, WORDS, read_wav
from ssm_cli.errors import UserError
from tests.data.fixtures import write_speech_commands, write_wav

EXTRA = ("bed", "cat", "visual")


@pytest.fixture(scope="module")
def sc_root(tmp_path_factory):
    return write_speech_commands(tmp_path_factory.mktemp("sc"), words=SC10_WORDS + EXTRA, n_per_word=20)


def folder_of(root, version="v0.02"):
    return root / "speech_commands" / f"speech_commands_{version}"


def test_sc35_official_split_labels_and_padding(sc_root):
    b = load_dataset("sc35", sc_root, download=False)
    n_words = len(SC10_WORDS + EXTRA)
    # every 5th clip (i % 5 == 1) is in validation_list, i % 5 == 2 in testing_list
    assert (len(b.train), len(b.val), len(b.test)) == (12 * n_words, 4 * n_words, 4 * n_words)
    assert (b.spec.seq_len, b.spec.d_input, b.spec.d_output) == (16000, 1, 35)
    assert set(b.train.targets.tolist()) == {WORDS["v0.02"].index(w) for w in SC10_WORDS + EXTRA}
    # a test item is the clip, scaled by 1/32768 and zero-padded to 16000 samples
    rows = b.test.indices
    item = next(i for i in range(len(b.test)) if b.test.targets[i] == WORDS["v0.02"].index("visual"))
    x, y = b.test[item]
    assert x.shape == (16000, 1) and x.dtype == torch.float32 and int(y) == WORDS["v0.02"].index("visual")
    clip = folder_of(sc_root) / "visual" / "00000002_nohash_0.wav"  # the first test clip of "visual"
    samples = read_wav(clip)
    np.testing.assert_allclose(x[: len(samples), 0].numpy(), samples / 32768, atol=1e-7)
    assert rows.dtype == np.int64
    # short clips are zero-padded at the end
    short = next(i for i in range(len(b.train)) if b.train[i][0][8000:].abs().sum() == 0)
    assert b.train[short][0][:8000].abs().sum() > 0


def test_eight_khz_views_are_the_test_and_val_clips_subsampled(sc_root):
    b = load_dataset("sc35", sc_root, download=False)
    assert set(b.extra_eval) == {"val_8k", "test_8k"}
    for name, split in (("test_8k", b.test), ("val_8k", b.val)):
        view, rate = b.extra_eval[name]
        assert rate == 2.0 and len(view) == len(split)
        x8, y8 = view[1]
        x16, y16 = split[1]
        assert x8.shape == (8000, 1) and torch.equal(x8, x16[::2]) and int(y8) == int(y16)


def test_sc10_is_stratified_70_15_15_over_the_ten_words(sc_root):
    b = load_dataset("sc10", sc_root, download=False)
    assert (b.spec.d_output, b.spec.seq_len) == (10, 16000)
    assert (len(b.train), len(b.val), len(b.test)) == (140, 30, 30)  # 20 clips per word: 14/3/3
    for split in (b.train, b.val, b.test):
        counts = np.bincount(split.targets, minlength=10)
        assert len(set(counts.tolist())) == 1  # same count for every word
    all_rows = np.concatenate([b.train.indices, b.val.indices, b.test.indices])
    assert len(set(all_rows.tolist())) == 200  # disjoint, the other words left out
    yes = SC10_WORDS.index("yes")
    assert yes == 0 and "8k" in " ".join(b.extra_eval)
    c = load_dataset("sc10", sc_root, split_seed=7, download=False)
    assert not np.array_equal(c.test.indices, b.test.indices)
    with pytest.raises(UserError, match="fractions"):
        load_dataset("sc10", sc_root, val_split=0.6, test_split=0.5, download=False)


def test_version_option_selects_v001(tmp_path):
    root = write_speech_commands(tmp_path, words=("yes", "no", "bed"), n_per_word=5, version="v0.01")
    b = load_dataset("sc35", root, version="v0.01", download=False)
    assert b.spec.d_output == 30 and len(b.train) + len(b.val) + len(b.test) == 15
    with pytest.raises(UserError, match="valid: v0.01, v0.02"):
        load_dataset("sc35", root, version="v0.03")
    with pytest.raises(UserError, match="not found"):
        load_dataset("sc35", root, version="v0.02", download=False)


def test_audio_is_int16_memmapped_and_workers_do_not_copy_it(sc_root):
    b = load_dataset("sc35", sc_root, download=False)
    assert isinstance(b.train.inputs, np.memmap) and b.train.inputs.dtype == np.int16
    blob = pickle.dumps(b.train)
    assert len(blob) < 100_000  # the audio is reopened by path, not pickled
    again = pickle.loads(blob)
    assert torch.equal(again[3][0], b.train[3][0])


def test_cache_reuse_and_invalidation(tmp_path):
    root = write_speech_commands(tmp_path, words=("yes", "no"), n_per_word=5)
    cache = folder_of(root) / CACHE_FOLDER
    load_dataset("sc35", root, download=False)
    entries = lambda: sorted(p.name for p in cache.iterdir() if p.is_dir() and not p.name.startswith("."))  # noqa: E731
    (entry,) = entries()
    assert not list(cache.glob(".scratch-*"))  # the build's scratch file is gone
    wav = folder_of(root) / "yes" / "00000001_nohash_1.wav"
    st = wav.stat()
    wav.write_bytes(b"\0" * st.st_size)  # corrupt, same size and mtime: not read again
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns))
    load_dataset("sc10", root, download=False)
    assert entries() == [entry]
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: the rebuild reads it and names it
    with pytest.raises(UserError, match="corrupt WAV file .*yes/00000001_nohash_1.wav"):
        load_dataset("sc35", root, download=False)


def test_bad_wavs_and_missing_lists_are_named(tmp_path):
    root = write_speech_commands(tmp_path, words=("yes",), n_per_word=3)
    wav = folder_of(root) / "yes" / "00000000_nohash_0.wav"
    write_wav(wav, np.zeros(100), rate=8000)
    with pytest.raises(UserError, match="00000000_nohash_0.wav is 1 channel.*8000 Hz; expected mono 16-bit 16000 Hz"):
        load_dataset("sc35", root, download=False)
    write_wav(wav, np.zeros(16000))
    wav.write_bytes(wav.read_bytes()[:-1000])
    with pytest.raises(UserError, match="truncated WAV file .*00000000_nohash_0.wav"):
        load_dataset("sc35", root, download=False)
    write_wav(wav, np.zeros(16000))
    (folder_of(root) / "testing_list.txt").unlink()
    with pytest.raises(UserError, match="split list missing: .*testing_list.txt"):
        load_dataset("sc35", root, download=False)


def test_missing_dataset_names_the_folders_layout_and_remedy(tmp_path):
    with pytest.raises(UserError) as e:
        load_dataset("sc10", tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / "speech_commands" / "speech_commands_v0.02") in msg
    assert "<word>/<speaker>_nohash_<k>.wav" in msg and "validation_list.txt" in msg
    assert "speech_commands_v0.02.tar.gz" in msg and "ssm data prepare" in msg
