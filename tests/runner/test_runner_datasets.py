"""A smoke training run on every dataset, each from a fixture in its real on-disk format."""
import json
from pathlib import Path

import pytest

from tests.data import fixtures as F
from tests.data import lra_fixtures as LF

WRITERS = {
    "scifar": lambda d: F.write_cifar_pickles(d, n_train_per_batch=12, n_test=12),
    "lra_image": lambda d: F.write_cifar_folder(d, n_train_per_class=3, n_test_per_class=1),
    "smnist": lambda d: F.write_mnist_idx(d, n_train=40, n_test=12),
    "psmnist": lambda d: F.write_mnist_idx(d, n_train=40, n_test=12, gz=False, layout="torchvision"),
    "sc10": lambda d: F.write_speech_commands(d, n_per_word=10, length=800),
    "sc35": lambda d: F.write_speech_commands(d, n_per_word=5, length=800),
    "bidmc": lambda d: F.write_bidmc_ts(d, n_train=20, n_test=6, length=400),
    "listops": lambda d: LF.write_listops(d),
    "lra_text": lambda d: LF.write_imdb(d, per_class=3, long_len=500),
    "lra_retrieval": lambda d: LF.write_aan(d, long_len=300),
    "pathfinder": lambda d: LF.write_pathfinder(d, n=20, resolution=32),
    "pathx": lambda d: LF.write_pathfinder(d, n=10, resolution=128),
}


@pytest.mark.parametrize("dataset", sorted(WRITERS))
def test_smoke_run_on_fixture(dataset, tmp_path):
    from ssm_cli.train.grid import plan, prepare
    from ssm_cli.train.run import execute

    data = tmp_path / "data"
    WRITERS[dataset](data)
    [run] = plan([f"dataset={dataset}", "preset=smoke", f"data_dir={data}", f"out_dir={tmp_path / 'runs'}",
                  "dataset.options.download=false", "trainer.epochs=1", "trainer.batch_size=4"])
    prepare(run)
    record = execute(run.run_dir)
    assert record["status"] == "completed", record.get("traceback") or record.get("error")
    metrics = record["epochs"][0]
    if dataset == "bidmc":
        assert metrics["val_rmse"] >= 0 and "test_rmse" in metrics
    else:
        assert 0 <= metrics["val_acc"] <= 100 and 0 <= metrics["test_acc"] <= 100
    if dataset in ("sc10", "sc35"):
        assert "test_8k_acc" in metrics  # the zero-shot 8 kHz view, evaluated at rate 2
    assert json.loads((Path(run.run_dir) / "record.json").read_text())["status"] == "completed"
