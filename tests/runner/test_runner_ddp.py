"""One run over two processes (``trainer.devices=2``, Lightning DDP over gloo on the CPU): one run
directory, one record, and the metrics of the one-process run (each rank computes half of every
global batch; the sums are added over the ranks)."""
import json
import math
import sys
from pathlib import Path

import pytest

from ssm_cli.cli import main as cli

SMOKE = ["preset=smoke", "dataset.options.n_train=64", "dataset.options.n_val=30", "dataset.options.n_test=30",
         "trainer.accelerator=cpu", "trainer.batch_size=8", "trainer.eval_batch_size=7"]  # 7: uneven shares
TIMINGS = ("seconds", "samples_per_s")


def only_record(out: Path) -> dict:
    [path] = out.glob("*/*/*/seed*/record.json")
    return json.loads(path.read_text())


def ssm_here(monkeypatch, *argv: str) -> None:
    """``ssm ARGV`` in this process (the DDP run's worker and its second rank are subprocesses)."""
    monkeypatch.setattr(sys, "argv", ["ssm", *argv])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 0


def test_two_ranks_leave_one_record_equal_to_the_one_process_run(tmp_path, monkeypatch):
    ssm_here(monkeypatch, "run", *SMOKE, f"out_dir={tmp_path / 'one'}")
    ssm_here(monkeypatch, "run", *SMOKE, "trainer.devices=2", f"out_dir={tmp_path / 'two'}")
    one, two = only_record(tmp_path / "one"), only_record(tmp_path / "two")
    assert two["status"] == "completed" and two["attempts"] == 1
    assert len(list((tmp_path / "two").glob("*/*/*/seed*"))) == 1
    assert any("DDP over 2 devices" in note for note in two["ddp"])
    assert "ddp" not in one
    assert len(one["epochs"]) == len(two["epochs"]) == 2
    for e1, e2 in zip(one["epochs"], two["epochs"]):
        for k, v in e1.items():
            if k.endswith(TIMINGS):
                continue
            assert math.isclose(v, e2[k], rel_tol=1e-5, abs_tol=1e-6), (k, v, e2[k])
    assert math.isclose(one["result"], two["result"], rel_tol=1e-6)


def test_rank_shares_cover_each_batch_and_weight_it_to_its_mean(monkeypatch):
    """Every sample of a batch is in exactly one rank's share, and the ranks' weighted share means
    average (as DDP averages gradients) to the batch's mean; a share-less batch is skipped in
    training by every rank, and in evaluation by the ranks without a share."""
    import torch

    from ssm_cli.train import ddp

    for w in (2, 3, 4):
        for n in (1, 2, 5, 7, 8, 13):
            y = torch.arange(n, dtype=torch.float64) ** 1.5
            batches = [(y[:, None], y)]
            got, mean = [], 0.0
            for r in range(w):
                monkeypatch.setattr(ddp, "rank", lambda r=r: r)
                monkeypatch.setattr(ddp, "world_size", lambda w=w: w)
                train, evaluation = list(ddp.RankShard(batches, True)), list(ddp.RankShard(batches, False))
                if n < w:
                    assert train == []
                for _, ys, weight in evaluation:
                    got.extend(ys.tolist())
                    mean += weight * ys.mean().item() / w
            assert got == y.tolist(), (w, n)
            assert math.isclose(mean, y.mean().item(), rel_tol=1e-12), (w, n)


@pytest.mark.gpu
def test_two_gpus_leave_one_record_equal_to_the_one_gpu_run(tmp_path, monkeypatch):
    """The same over two GPUs (NCCL); float32 matmuls at full precision so the halves add up as the whole."""
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    gpu = [a.replace("trainer.accelerator=cpu", "trainer.accelerator=gpu") for a in SMOKE] + [
        "trainer.matmul_precision=highest", "trainer.compile=false", "trainer.cuda_graphs=false"]
    ssm_here(monkeypatch, "run", *gpu, f"out_dir={tmp_path / 'one'}")
    ssm_here(monkeypatch, "run", *gpu, "trainer.devices=2", f"out_dir={tmp_path / 'two'}")
    one, two = only_record(tmp_path / "one"), only_record(tmp_path / "two")
    assert two["status"] == "completed" and two["ddp"]
    for e1, e2 in zip(one["epochs"], two["epochs"]):
        for k, v in e1.items():
            if not k.endswith(TIMINGS):
                assert math.isclose(v, e2[k], rel_tol=1e-4, abs_tol=1e-5), (k, v, e2[k])
