"""trainer.test_at: ``best`` (each epoch evaluates val; the test sets once, with each run's weights
of its best validation epoch) reports what ``every`` (every set every epoch) reports — also after an
interruption and in a pack — and leaves the test metrics out of the other epochs."""
import math
from pathlib import Path

import pytest
import torch

from ssm_cli.train.grid import plan, prepare
from ssm_cli.train.checkpoint import RecordKeeper
from ssm_cli.train.run import execute, execute_pack

# On this setup the best validation epoch is 4 of 6 and epochs 5 and 6 tie it (a tie keeps the
# earliest), so the last epoch's weights, or a tie's, give other test metrics than the best's.
ARGS = ["preset=smoke", "model.dropout=0.0", "trainer.epochs=6", "trainer.limit_train_batches=4",
        "dataset.options.n_train=64", "dataset.options.n_val=32", "dataset.options.n_test=32"]


def planned(out: Path, *overrides: str) -> list:
    runs = plan([*ARGS, f"out_dir={out}", f"data_dir={out.parent / 'data'}", *overrides])
    for r in runs:
        prepare(r)
    return runs


def run_alone(out: Path, *overrides: str) -> dict:
    [r] = planned(out, *overrides)
    return execute(r.run_dir)


def keys_tested(entry: dict) -> list[str]:
    return sorted(k for k in entry if k.startswith("test_"))


@pytest.fixture(scope="module")
def every(tmp_path_factory) -> dict:
    """The reference: the same run with every set evaluated every epoch."""
    return run_alone(tmp_path_factory.mktemp("every") / "runs", "trainer.test_at=every")


def same_test_result(r: dict, ref: dict, rel: float = 1e-6) -> None:
    assert r["status"] == "completed", r.get("traceback") or r.get("error")
    assert r["best_epoch"] == ref["best_epoch"]
    assert r["result"] == ref["result"] == r["best"]["test_acc"]
    assert math.isclose(r["best"]["test_loss"], ref["best"]["test_loss"], rel_tol=rel), (r["best"], ref["best"])


def test_best_tests_once_what_every_tests_each_epoch(tmp_path, every):
    from ssm_cli.results.plot import plot_curves
    from ssm_cli.results.table import aggregate

    epochs = every["epochs"]
    last = epochs[-1]
    assert every["best_epoch"] < len(epochs) and not math.isclose(every["best"]["test_loss"], last["test_loss"]), \
        "this setup no longer tells the best epoch's weights from the last epoch's"
    best = run_alone(tmp_path / "runs")  # test_at=best is the default
    assert (best["test_at"], every["test_at"]) == ("best", "every")
    same_test_result(best, every)
    for e, f in zip(best["epochs"], epochs, strict=True):  # the same training, epoch by epoch
        assert (e["train_loss"], e["val_loss"], e["val_acc"]) == (f["train_loss"], f["val_loss"], f["val_acc"])
    # only the best epoch's entry holds the test metrics; with `every`, each epoch's does
    assert [keys_tested(e) for e in best["epochs"]] == [["test_acc", "test_loss"] if e["epoch"] == best["best_epoch"]
                                                      else [] for e in best["epochs"]]
    assert all(keys_tested(e) == ["test_acc", "test_loss"] for e in epochs)
    assert best["test_seconds"] > 0 and every["test_seconds"] is None
    # tables aggregate both kinds of record (and the records made before test_at); test curves need `every`
    [row] = aggregate([best, every])
    assert row["n"] == 2 and row["mean"] == best["result"] and row["std"] == 0.0
    assert plot_curves(tmp_path / "runs", tmp_path / "png", metric="test_acc") == []
    assert len(plot_curves(Path(every["run_dir"]).parents[3], tmp_path / "png", metric="test_acc")) == 1


class Killed(Exception):
    pass


@pytest.mark.parametrize("stop", [5, 6], ids=["after epoch 5, past the best",
                                              "after the last epoch, before the test pass"])
def test_interrupted_run_tests_the_weights_of_its_best_epoch(tmp_path, every, monkeypatch, stop):
    """The kept weights travel in the checkpoint; a run whose epochs are all done still gets its test pass."""
    keep_epoch = RecordKeeper.on_train_epoch_end

    def killed_after_the_checkpoint(self, trainer, task):
        keep_epoch(self, trainer, task)
        if trainer.current_epoch + 1 == stop:
            raise Killed

    monkeypatch.setattr(RecordKeeper, "on_train_epoch_end", killed_after_the_checkpoint)
    first = run_alone(tmp_path / "runs")
    assert first["status"] == "failed" and len(first["epochs"]) == stop
    assert not any(keys_tested(e) for e in first["epochs"])
    monkeypatch.undo()
    again = execute(Path(first["run_dir"]))
    assert again["attempts"] == 2
    same_test_result(again, every)
    # the resume is exact: the later epochs are those of the run never interrupted
    assert [e["train_loss"] for e in again["epochs"]] == [e["train_loss"] for e in every["epochs"]]


def test_pack_tests_each_member_as_alone(tmp_path, every):
    """Two members with their own weights of their own best epochs, tested in one pass."""
    runs = [r for r in planned(tmp_path / "pack", "ablation=init", "seeds=[0]") if r.variant in ("inv", "legs")]
    inv, legs = execute_pack([r.run_dir for r in runs])
    assert inv["pack"]["members"] == [str(r.run_dir) for r in runs]
    assert inv["test_seconds"] == legs["test_seconds"] > 0  # one pass
    same_test_result(inv, every, rel=1e-5)  # the default model is inv: the run alone is the reference
    legs_alone = execute(next(r for r in planned(tmp_path / "alone", "ablation=init", "seeds=[0]")
                              if r.variant == "legs").run_dir)
    same_test_result(legs, legs_alone, rel=1e-5)
    assert legs["best"]["test_loss"] != inv["best"]["test_loss"]


def test_test_at_is_not_part_of_the_run_identity(tmp_path):
    """Both modes compute the same test metric, so they file (and skip, and resume) the same run;
    evaluating fewer sets does not change training, even with dropout on a CPU (whose masks come
    from the random stream that each evaluation DataLoader pass draws a seed from)."""
    [a], [b] = (plan([*ARGS, f"out_dir={tmp_path}", f"trainer.test_at={m}"]) for m in ("best", "every"))
    assert a.run_dir == b.run_dir
    dropout = [a for a in ARGS if not a.startswith(("model.dropout", "trainer.epochs"))]
    dropout += ["model.dropout=0.2", "trainer.epochs=2"]
    losses = []
    for mode in ("best", "every"):
        [r] = plan([*dropout, f"out_dir={tmp_path / mode}", f"data_dir={tmp_path / 'data'}", f"trainer.test_at={mode}"])
        prepare(r)
        losses.append([e["train_loss"] for e in execute(r.run_dir)["epochs"]])
    assert losses[0] == losses[1]


def test_kept_weights_are_copies_of_the_first_best_epoch(tmp_path):
    """Strict improvements only (ties keep the earlier epoch); copies with the buffers (BatchNorm's
    running statistics), not references; they survive a checkpoint; an epoch with test metrics
    (test_at=every) needs none."""
    import io

    from ssm_cli.config import compose
    from ssm_cli.data import load_dataset
    from ssm_cli.train.task import SequenceTask

    cfg = compose(["preset=smoke", "model.norm=batch", f"out_dir={tmp_path}"])
    data = load_dataset("synthetic", str(tmp_path / "data"), n_train=8, n_val=8, n_test=8)

    def new_task():
        return SequenceTask(cfg, data.spec, ["val", "test"], [1.0, 1.0], steps_per_epoch=1, seed=0)

    task = new_task()
    live = task.members[0].state_dict()  # shares storage with the parameters and buffers

    def finish_epoch(epoch: int, val_acc: float, **test) -> None:
        for t in live.values():
            t.fill_(epoch)  # the weights "after" this epoch
        task.histories[0].append({"epoch": epoch, "val_acc": val_acc, **test})
        task.keep_best_states()

    assert any("running_mean" in n for n in live)
    for epoch, val_acc in [(1, 50.0), (2, 60.0), (3, 60.0), (4, 40.0)]:
        finish_epoch(epoch, val_acc)
    kept = task.best_states[0]
    assert kept["epoch"] == 2 and kept["state"].keys() == live.keys()
    assert all((t == 2).all() for t in kept["state"].values())
    ck = {}
    task.on_save_checkpoint(ck)
    buf = io.BytesIO()
    torch.save(ck, buf)
    buf.seek(0)
    fresh = new_task()
    fresh.on_load_checkpoint(torch.load(buf, weights_only=False))
    fresh.load_best_states(fresh.untested_members())
    assert all((t == 2).all() for t in fresh.members[0].state_dict().values())
    finish_epoch(5, 70.0, test_loss=1.0, test_acc=90.0)  # evaluated with its epoch: nothing to keep
    assert task.best_states[0] is None and task.untested_members() == []
