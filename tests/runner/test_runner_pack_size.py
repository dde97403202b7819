"""Pack sizes that fit: launcher.pack=auto's choice, and a pack that runs out of GPU memory is
halved and resumed from its checkpoint, every run trained and recorded exactly once."""
import json
import math
from pathlib import Path

import pytest
import torch

from ssm_cli.train.pack_size import FREE_FRACTION, choose_k, is_oom

ARGS = ["ablation=init", "seeds=[0]", "preset=smoke", "trainer.epochs=2", "trainer.limit_train_batches=2",
        "dataset.options.n_train=64", "dataset.options.n_val=32", "dataset.options.n_test=32", "model.dropout=0.0"]


def test_choose_k_fits_the_free_memory():
    assert choose_k(10 * 2**20, 100 * 2**20, 20) == int(FREE_FRACTION * 10)
    assert choose_k(10 * 2**20, 100 * 2**20, 3) == 3      # never more than the runs that can share
    assert choose_k(500 * 2**20, 100 * 2**20, 5) == 1     # one run is always tried
    assert is_oom({"status": "failed", "error": "OutOfMemoryError: CUDA out of memory"})
    assert not is_oom({"status": "failed", "error": "ValueError: x"}) and not is_oom({"status": "completed"})


def _grid(out: Path, pack: int, monkeypatch, fits: int | None):
    """Run the grid in this process; with ``fits``, a pack of more members raises an allocation
    failure in its second epoch (after its first checkpoint), as CUDA would."""
    from ssm_cli.train import grid
    from ssm_cli.train.pack import make_units
    from ssm_cli.train.task import SequenceTask

    attempts: list[int] = []
    if fits is not None:
        step = SequenceTask.training_step

        def training_step(self, batch, batch_idx):
            if self.K > fits and self.current_epoch == 1:
                attempts.append(self.K)
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return step(self, batch, batch_idx)

        monkeypatch.setattr(SequenceTask, "training_step", training_step)
    runs = grid.plan([*ARGS, f"out_dir={out}", f"launcher.pack={pack}"])
    done: list = []
    grid.run_serial(make_units(grid.todo(runs, False), pack), lambda r, rec: done.append((r.variant, rec["status"])))
    recs = {r["variant"]: r for r in (json.loads(p.read_text()) for p in out.rglob("record.json"))}
    return done, recs, attempts


def test_out_of_memory_halves_the_pack_and_loses_no_run(tmp_path, monkeypatch):
    done, recs, attempts = _grid(tmp_path / "oom", 5, monkeypatch, fits=2)
    assert attempts == [5, 3]  # 5 -> 3 + 2, then 3 -> 2 + 1
    assert sorted(done) == sorted((v, "completed") for v in ("inv", "lin", "legs", "real", "rand"))  # each once
    assert len(recs) == 5 and all(r["status"] == "completed" for r in recs.values())
    assert all([e["epoch"] for e in r["epochs"]] == [1, 2] for r in recs.values())  # no epoch lost or repeated
    assert all(r["peak_gpu_memory_mb"] is None for r in recs.values())  # CPU: null
    # resumed from the pack's checkpoint, the halves compute what the whole pack computes
    monkeypatch.undo()
    _, whole, _ = _grid(tmp_path / "whole", 5, monkeypatch, fits=None)
    for v, r in recs.items():
        for e, f in zip(r["epochs"], whole[v]["epochs"], strict=True):
            assert math.isclose(e["train_loss"], f["train_loss"], rel_tol=1e-5), (v, e["epoch"])
            assert math.isclose(e["val_loss"], f["val_loss"], rel_tol=1e-5), (v, e["epoch"])
        assert r["result"] == pytest.approx(whole[v]["result"], abs=1e-9)


def test_pack_auto_on_cpu_packs_every_run_and_dry_run_says_so(ssm, tmp_path):
    p = ssm("run", *ARGS, f"out_dir={tmp_path / 'r'}", "launcher.pack=auto", "--dry-run")
    assert "pack: inv, lin, legs, real, rand" in p.stdout
    bad = ssm("run", "launcher.pack=big", f"out_dir={tmp_path / 'r'}", check=False)
    assert bad.returncode == 2 and "launcher.pack" in bad.stderr and "auto" in bad.stderr


@pytest.mark.gpu
def test_pack_auto_measures_one_run_on_the_gpu(tmp_path):
    from ssm_cli.train.grid import plan
    from ssm_cli.train.pack_size import measure_member_bytes, resolve

    cfg = plan([*ARGS, f"out_dir={tmp_path}", "launcher.pack=auto"])[0].cfg
    assert measure_member_bytes(cfg) > 0
    assert 1 <= resolve(cfg, 5) <= 5
