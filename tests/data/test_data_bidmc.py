"""BIDMC32 loader and the Monash .ts reader on fixtures in the archive's format."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from ssm_cli.data import load_dataset
from ssm_cli.data.bidmc import read_ts
from ssm_cli.data.cache import CACHE_FOLDER
from ssm_cli.errors import UserError
from tests.data.fixtures import write_bidmc_ts

L = 400  # short series keep the fixture small; the loader takes the length from the file


def test_read_ts_parses_channels_and_targets(tmp_path):
    root = write_bidmc_ts(tmp_path, n_train=4, n_test=2, length=L, targets=("HR",))
    path = root / "bidmc" / "BIDMC32HR" / "BIDMC32HR_TRAIN.ts"
    x, y = read_ts(path)
    assert x.shape == (4, L, 2) and x.dtype == np.float32 and y.dtype == np.float32
    line = [ln for ln in path.read_text().splitlines() if ln and ln[0] not in "#@"][1]
    *channels, target = line.split(":")
    assert float(target) == y[1]
    np.testing.assert_allclose(x[1, :, 1], np.array(channels[1].split(","), dtype=np.float32))


def test_bidmc_shapes_normalisation_and_split(tmp_path):
    root = write_bidmc_ts(tmp_path, n_train=30, n_test=10, length=L)
    b = load_dataset("bidmc", root, download=False)
    assert (b.spec.task, b.spec.metric, b.spec.d_output) == ("regression", "rmse", 1)
    assert (b.spec.seq_len, b.spec.d_input) == (L, 2)
    assert (len(b.train), len(b.val), len(b.test)) == (27, 3, 10)
    x, y = b.train[0]
    assert x.shape == (L, 2) and x.dtype == torch.float32 and y.shape == (1,) and y.dtype == torch.float32
    xs = torch.stack([b.train[i][0] for i in range(len(b.train))])
    assert torch.allclose(xs.mean(dim=(0, 1)), torch.zeros(2), atol=1e-4)
    assert torch.allclose(xs.std(dim=(0, 1)), torch.ones(2), atol=1e-3)
    _, y_raw = read_ts(root / "bidmc" / "BIDMC32HR" / "BIDMC32HR_TEST.ts")
    assert np.allclose([float(b.test[i][1]) for i in range(10)], y_raw)  # targets in their own units


def test_target_option_and_reshuffle(tmp_path):
    root = write_bidmc_ts(tmp_path, n_train=30, n_test=10, length=L)
    hr = load_dataset("bidmc", root, download=False)
    rr = load_dataset("bidmc", root, target="rr", download=False)
    assert not torch.equal(hr.test[0][0], rr.test[0][0])
    shuffled = load_dataset("bidmc", root, target="spo2", reshuffle=True, download=False)
    assert (len(shuffled.train), len(shuffled.val), len(shuffled.test)) == (28, 6, 6)
    with pytest.raises(UserError, match="valid: hr, rr, spo2"):
        load_dataset("bidmc", root, target="bp")


def test_reference_layout_and_missing_values(tmp_path):
    root = write_bidmc_ts(tmp_path / "a", n_train=6, n_test=2, length=L, targets=("RR",), missing=True)
    shutil.move(root / "bidmc" / "BIDMC32RR", root / "bidmc" / "RR")  # the S4 reference's folder name
    b = load_dataset("bidmc", root, target="rr", val_split=2, download=False)
    assert all(torch.isfinite(b.train[i][0]).all() for i in range(len(b.train)))
    assert all(torch.isfinite(b.val[i][0]).all() for i in range(len(b.val)))


def test_cache_reuse_and_invalidation(tmp_path):
    root = write_bidmc_ts(tmp_path, n_train=6, n_test=2, length=L, targets=("HR",))
    folder = root / "bidmc" / "BIDMC32HR"
    load_dataset("bidmc", root, val_split=2, download=False)
    entries = lambda: sorted(p.name for p in (folder / CACHE_FOLDER).iterdir() if not p.name.startswith("."))  # noqa: E731
    first = entries()
    f = folder / "BIDMC32HR_TEST.ts"
    st = f.stat()
    f.write_bytes(b"#" * st.st_size)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert len(load_dataset("bidmc", root, val_split=2, download=False).test) == 2
    assert entries() == first
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(UserError, match="no cases after @data .*BIDMC32HR_TEST.ts|BIDMC32HR_TEST.ts.*no cases"):
        load_dataset("bidmc", root, val_split=2, download=False)


def test_corrupt_files_are_named(tmp_path):
    root = write_bidmc_ts(tmp_path, n_train=3, n_test=2, length=L, targets=("HR",))
    f = root / "bidmc" / "BIDMC32HR" / "BIDMC32HR_TRAIN.ts"
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines[:-1] + [lines[-1][: len(lines[-1]) // 2]]) + "\n")  # a cut-off last case
    with pytest.raises(UserError, match="corrupt .ts file .*BIDMC32HR_TRAIN.ts, line 13"):
        load_dataset("bidmc", root, download=False)
    f.write_text("\n".join(lines).replace("@targetlabel true", "@classLabel true 0 1") + "\n")
    with pytest.raises(UserError, match="classification problem"):
        load_dataset("bidmc", root, download=False)


def test_missing_names_folders_and_download(tmp_path):
    with pytest.raises(UserError) as e:
        load_dataset("bidmc", tmp_path, target="spo2", download=False)
    msg = str(e.value)
    assert str(tmp_path / "bidmc" / "BIDMC32SpO2") in msg and "BIDMC32SpO2_TRAIN.ts" in msg
    assert "zenodo.org/record/4001464/files/BIDMC32SpO2_TRAIN.ts" in msg and "ssm data prepare bidmc" in msg
