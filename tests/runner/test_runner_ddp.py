"""One run over two processes (``trainer.devices=2``, Lightning DDP over gloo on the CPU): one run
directory, one record, and the metrics of the one-process run (each rank computes half of every
global batch; the sums are added over the ranks)."""
import json
import math
from pathlib import Path

SMOKE = ["preset=smoke", "dataset.options.n_train=64", "dataset.options.n_val=30", "dataset.options.n_test=30",
         "trainer.accelerator=cpu", "trainer.batch_size=8", "trainer.eval_batch_size=7"]  # 7: uneven shares
TIMINGS = ("seconds", "samples_per_s")


def only_record(out: Path) -> dict:
    [path] = out.glob("*/*/*/seed*/record.json")
    return json.loads(path.read_text())


def test_two_ranks_leave_one_record_equal_to_the_one_process_run(ssm, tmp_path):
    ssm("run", *SMOKE, f"out_dir={tmp_path / 'one'}")
    ssm("run", *SMOKE, "trainer.devices=2", f"out_dir={tmp_path / 'two'}")
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
