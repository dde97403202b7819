"""Packs (launcher.pack=K): K runs trained as one network compute what the K runs compute alone,
keep one record each, resume as a pack or, member by member, alone."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SMOKE = ["preset=smoke", "dataset.options.n_train=64", "dataset.options.n_val=32", "dataset.options.n_test=32"]
LONG = ["ablation=disc", "seeds=[0]", "preset=smoke", "trainer.epochs=6", "trainer.limit_train_batches=8",
        "dataset.options.n_train=256", "dataset.options.n_val=32", "dataset.options.n_test=32", "model.dropout=0.0"]


def records(out: Path) -> dict:
    return {(r["variant"], r["seed"]): r for r in (json.loads(p.read_text()) for p in out.rglob("record.json"))}


def test_pack_equals_the_runs_alone(ssm, tmp_path):
    args = ["ablation=init", "seeds=[0]", *SMOKE, "model.dropout=0.0"]
    dry = ssm("run", *args, f"out_dir={tmp_path / 'a'}", "launcher.pack=5", "--dry-run")
    assert "pack: inv, lin, legs, real, rand" in dry.stdout
    p = ssm("run", *args, f"out_dir={tmp_path / 'a'}", "launcher.pack=5")
    assert "1 pack(s) of 5 runs" in p.stdout
    ssm("run", *args, f"out_dir={tmp_path / 'b'}")
    packed, alone = records(tmp_path / "a"), records(tmp_path / "b")
    assert len(packed) == 5 and {r["status"] for r in packed.values()} == {"completed"}
    for key, r in packed.items():
        assert r["pack"]["index"] == ["inv", "lin", "legs", "real", "rand"].index(key[0])
        assert not (Path(r["run_dir"]) / "last.ckpt").exists()  # the pack holds the checkpoint
        assert r["n_params"] == alone[key]["n_params"] and r["optimizer_groups"] == alone[key]["optimizer_groups"]
        for e, f in zip(r["epochs"], alone[key]["epochs"], strict=True):
            assert e.keys() == f.keys()  # test metrics in the same (best) epoch's entry only
            for m in ("train_loss", "val_loss", "test_loss"):
                if m in e:
                    assert math.isclose(e[m], f[m], rel_tol=1e-5), (key, m, e[m], f[m])
            assert e["val_acc"] == f["val_acc"]
        # trainer.test_at=best: each member tested once, with its own weights of its own best epoch
        assert r["best_epoch"] == alone[key]["best_epoch"] and r["result"] == alone[key]["result"]
        assert [e["epoch"] for e in r["epochs"] if "test_loss" in e] == [r["best_epoch"]]
    pack_dir = Path(packed[("inv", 0)]["pack"]["dir"])
    assert (pack_dir / "last.ckpt").exists()
    assert json.loads((pack_dir / "pack.json").read_text())["members"] == packed[("inv", 0)]["pack"]["members"]
    again = ssm("run", *args, f"out_dir={tmp_path / 'a'}", "launcher.pack=5")
    assert "5 already done" in again.stdout


def test_packs_group_by_seed_and_respect_the_size(tmp_path):
    from ssm_cli.train.grid import plan
    from ssm_cli.train.pack import make_units

    runs = plan(["ablation=init", "seeds=[0,1]", "preset=smoke", f"out_dir={tmp_path}", "launcher.pack=2"])
    units = make_units(runs, 2)
    assert [[(r.variant, r.seed) for r in u] for u in units] == [
        [("inv", 0), ("lin", 0)], [("legs", 0), ("real", 0)], [("rand", 0)],
        [("inv", 1), ("lin", 1)], [("legs", 1), ("real", 1)], [("rand", 1)]]
    # runs that differ outside the SSM core (here: the backbone) never share a pack
    a = plan(["preset=smoke", f"out_dir={tmp_path}"])
    b = plan(["preset=smoke", f"out_dir={tmp_path}", "model.d_model=32"])
    assert len(make_units(a + b, 4)) == 2


def test_bad_pack_size_exits_2(ssm, tmp_path):
    p = ssm("run", "launcher.pack=0", f"out_dir={tmp_path / 'r'}", check=False)
    assert p.returncode == 2 and "invalid value 0 for launcher.pack; valid: an integer >= 1" in p.stderr


def _kill_mid_pack(tmp_path, out):
    env = {**os.environ, "SSM_DATA": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "ssm_cli.cli.main", "run", *LONG, f"out_dir={out}", "launcher.pack=2"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        rs = records(out)
        if len(rs) == 2 and all(r["status"] == "running" and len(r["epochs"]) >= 2 for r in rs.values()):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rs = records(out)
    assert all(r["status"] == "running" for r in rs.values()), "the kill did not land mid-pack"
    return rs


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The LONG pack run in one go (in this process): what a resumed pack must report."""
    from ssm_cli.train.grid import plan, prepare
    from ssm_cli.train.run import execute_pack

    tmp = tmp_path_factory.mktemp("uninterrupted")
    runs = plan([*LONG, f"out_dir={tmp / 'runs'}", f"data_dir={tmp / 'data'}"])
    for r in runs:
        prepare(r)
    return {(r.variant, r.seed): record for r, record in zip(runs, execute_pack([r.run_dir for r in runs]))}


@pytest.mark.parametrize("again", ["as the same pack", "unpacked"])
def test_interrupted_pack_resumes(ssm, tmp_path, again, uninterrupted):
    out = tmp_path / "runs"
    before = _kill_mid_pack(tmp_path, out)
    pack = ["launcher.pack=2"] if again == "as the same pack" else []
    p = ssm("run", *LONG, f"out_dir={out}", *pack)
    rs = records(out)
    assert {r["status"] for r in rs.values()} == {"completed"}
    for key, r in rs.items():
        assert [e["epoch"] for e in r["epochs"]] == [1, 2, 3, 4, 5, 6]
        assert r["attempts"] == 2
        done = before[key]["epochs"]
        untested = [{m: v for m, v in e.items() if not m.startswith("test_")} for e in r["epochs"]]
        assert untested[:len(done)] == done  # finished epochs are kept, not recomputed (test pass: at the end)
        own_ckpt = (Path(r["run_dir"]) / "last.ckpt").exists()
        assert own_ckpt == (again == "unpacked")
        # the resume is exact (batch order, and the weights kept of the best epoch for the test pass)
        ref = uninterrupted[key]
        for e, f in zip(r["epochs"], ref["epochs"], strict=True):
            assert math.isclose(e["train_loss"], f["train_loss"], rel_tol=1e-5) and e["val_acc"] == f["val_acc"]
        assert r["best_epoch"] == ref["best_epoch"] and r["result"] == ref["result"]
        assert math.isclose(r["best"]["test_loss"], ref["best"]["test_loss"], rel_tol=1e-5)
    if again == "as the same pack":
        assert "1 pack(s) of 2 runs" in p.stdout


def test_unpacked_checkpoint_is_a_single_runs_checkpoint(ssm, tmp_path):
    """Member k's share of a pack checkpoint loads into the run alone: same weights, same optimizer state."""
    from omegaconf import OmegaConf

    from ssm_cli.data import load_dataset
    from ssm_cli.train.pack import unpack_checkpoint
    from ssm_cli.train.task import SequenceTask

    out = tmp_path / "runs"
    ssm("run", *LONG[:3], *LONG[4:], "trainer.epochs=1", f"out_dir={out}", "launcher.pack=2")
    rs = records(out)
    r = rs[("bilinear", 0)]
    dest = tmp_path / "member.ckpt"
    unpack_checkpoint(Path(r["pack"]["dir"]) / "last.ckpt", r["pack"]["index"], dest)
    pack_ck = torch.load(Path(r["pack"]["dir"]) / "last.ckpt", weights_only=False)
    ck = torch.load(dest, weights_only=False)
    cfg = OmegaConf.load(Path(r["run_dir"]) / "config.yaml")
    data = load_dataset("synthetic", str(tmp_path / "data"), **cfg.dataset.options)
    task = SequenceTask(cfg, data.spec, ["val", "test"], [1.0, 1.0], steps_per_epoch=8)
    task.load_state_dict(ck["state_dict"])  # strict: exactly the single run's keys
    opt = task.configure_optimizers()["optimizer"]
    opt.load_state_dict(ck["optimizer_states"][0])
    k = r["pack"]["index"]
    for name, p in task.model.named_parameters():
        torch.testing.assert_close(p, pack_ck["state_dict"][f"model.members.{k}.{name}"], msg=name)
    counts = pack_ck["ssm_pack_groups"]
    pack_opt = pack_ck["optimizer_states"][0]
    ids = [i for g in pack_opt["param_groups"][sum(counts[:k]):sum(counts[:k + 1])] for i in g["params"]]
    params = [q for g in opt.param_groups for q in g["params"]]
    assert len(ids) == len(params) > 0
    for i, q in zip(ids, params):
        assert torch.equal(opt.state[q]["exp_avg_sq"], pack_opt["state"][i]["exp_avg_sq"])
    untested = [{m: v for m, v in e.items() if not m.startswith("test_")} for e in r["epochs"]]
    assert ck["ssm_histories"] == [untested]  # the test pass ran after the last checkpoint
    [kept] = ck["ssm_best_states"]  # trainer.test_at=best: member k's weights of its best epoch
    assert kept["epoch"] == pack_ck["ssm_best_states"][k]["epoch"] == r["best_epoch"]
    for name, t in kept["state"].items():
        assert torch.equal(t, pack_ck["ssm_best_states"][k]["state"][name]), name


def test_a_diverged_member_does_not_stop_the_pack(tmp_path):
    from ssm_cli.config import compose
    from ssm_cli.data import load_dataset
    from ssm_cli.train.metrics import Diverged
    from ssm_cli.train.task import SequenceTask

    cfg = compose(["preset=smoke", f"out_dir={tmp_path}"])
    data = load_dataset("synthetic", str(tmp_path / "data"), n_train=8, n_val=8, n_test=8)
    task = SequenceTask([cfg, cfg, cfg], data.spec, ["val"], [1.0], steps_per_epoch=4, seed=0)
    y = torch.zeros(2, dtype=torch.long)
    out = torch.zeros(3, 2, 10)
    task.steps_done = 5
    task._account(out, torch.tensor([1.0, float("nan"), 1.0]), y, 0)
    assert task.diverged == {1: 4}
    task.steps_done = 9
    task._account(out, torch.tensor([1.0, float("inf"), float("nan")]), y, 1)
    assert task.diverged == {1: 4, 2: 8}
    with pytest.raises(Diverged):
        task._account(out, torch.tensor([float("nan")] * 3), y, 2)
    # members start from the weights of their runs alone (same seed before each build)
    for m in task.members[1:]:
        for p, q in zip(task.members[0].parameters(), m.parameters()):
            assert torch.equal(p, q)


def test_a_member_that_diverges_leaves_the_others_as_they_are_alone(tmp_path):
    """Member 1 of 3 diverges (its SSM learning rate 1e6: NaN within a few steps); members 0 and 2
    complete with the numbers of their runs alone (NaN * 0 = NaN must not cross the block-diagonal
    GEMM of the members' linears)."""
    from ssm_cli.train.grid import plan, prepare
    from ssm_cli.train.run import execute_pack

    def runs(out, *extra):
        common = ["preset=smoke", "seeds=[0]", "dataset.options.n_train=64", "dataset.options.n_val=16",
                  "dataset.options.n_test=16", f"out_dir={tmp_path / out}", f"data_dir={tmp_path / 'data'}"]
        rs = plan([*common, *extra])
        for r in rs:
            prepare(r)
        return rs

    zoh, bilinear = runs("pack", "ablation=disc")
    [wild] = runs("pack", "model.lr=1e6")  # differs in a core option only: it may share the pack
    packed = execute_pack([zoh.run_dir, wild.run_dir, bilinear.run_dir])
    assert [r["status"] for r in packed] == ["completed", "diverged", "completed"]
    assert packed[1]["diverged_step"] is not None
    alone = [execute_pack([r.run_dir])[0] for r in runs("alone", "ablation=disc")]
    for r, ref in zip([packed[0], packed[2]], alone, strict=True):
        assert r["variant"] == ref["variant"] and ref["status"] == "completed"
        for e, f in zip(r["epochs"], ref["epochs"], strict=True):
            for m in ("train_loss", "val_loss", "test_loss"):
                if m in e:
                    assert math.isclose(e[m], f[m], rel_tol=1e-5), (r["variant"], m, e[m], f[m])
            assert e["val_acc"] == f["val_acc"]
        assert r["best_epoch"] == ref["best_epoch"] and r["result"] == ref["result"]


def test_pack_of_runs_that_all_diverge(ssm, tmp_path):
    out = tmp_path / "runs"
    p = ssm("run", "ablation=disc", "seeds=[0]", f"out_dir={out}", *SMOKE, "dataset.options.noise=inf",
            "launcher.pack=2", check=False)
    assert p.returncode == 1
    rs = records(out)
    assert {r["status"] for r in rs.values()} == {"diverged"} and {r["diverged_step"] for r in rs.values()} == {0}


def test_start_up_trace_only_with_ssm_trace(ssm, tmp_path):
    args = ["run", *SMOKE, "trainer.epochs=1", "launcher.pack=1"]
    quiet = ssm(*args, f"out_dir={tmp_path / 'a'}")
    assert "[trace" not in quiet.stderr + quiet.stdout
    loud = ssm(*args, f"out_dir={tmp_path / 'b'}", env={"SSM_TRACE": "1"})
    for phase in ("grid planned", "fit starts", "setup done", "step 1 done", "evaluation of epoch 1 done"):
        assert phase in loud.stderr, phase


def test_pack_members_held_elsewhere_or_completed_are_reported_the_rest_train(tmp_path):
    """A member another process holds is reported locked (with its holder), one completed since
    the grid was planned keeps its record; the others train as a smaller pack."""
    from ssm_cli.train.grid import plan, prepare
    from ssm_cli.train.record import run_lock
    from ssm_cli.train.run import execute, execute_pack

    runs = plan(["ablation=init", "seeds=[0]", f"out_dir={tmp_path}", *SMOKE])[:3]
    for r in runs:
        prepare(r)
    done = execute(runs[2].run_dir)
    assert done["status"] == "completed"
    with run_lock(runs[0].run_dir):
        out = execute_pack([r.run_dir for r in runs])
    assert out[0]["status"] == "locked" and out[0]["holder"]["pid"] == os.getpid()
    assert out[1]["status"] == "completed" and "pack" not in out[1]  # trained alone: a pack of one
    assert out[2] == done
    assert execute_pack([r.run_dir for r in runs[:2]])[0]["status"] == "completed"
