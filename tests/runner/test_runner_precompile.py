"""The second process that compiles a run's kernels ahead (``ssm_cli.train.precompile``)."""
import os
import subprocess
import sys
import tempfile

import pytest
import torch
from omegaconf import open_dict

from ssm_cli.config import compose, config_hash
from ssm_cli.train import precompile


def cfg(*overrides: str):
    c = compose(["preset=smoke", *overrides])
    with open_dict(c):
        c.run = {"seed": 0}
    return c


def test_wanted_only_when_compiling_on_cuda():
    assert precompile.wanted(cfg(), cuda=True)  # compile=auto
    assert precompile.wanted(cfg("trainer.compile=true"), cuda=True)
    assert not precompile.wanted(cfg(), cuda=False)
    assert not precompile.wanted(cfg("trainer.compile=false"), cuda=True)
    assert not precompile.wanted(cfg("trainer.precompile=false"), cuda=True)
    assert not precompile.wanted(cfg("trainer.deterministic=true"), cuda=True)


def test_precompile_is_not_part_of_what_a_run_computes():
    assert config_hash(cfg("trainer.precompile=false")) == config_hash(cfg())


def test_bad_precompile_value_is_refused():
    from ssm_cli.errors import UserError

    with pytest.raises(UserError, match="precompile"):
        compose(["trainer.precompile=sometimes"])


def test_run_compiles_the_models_train_and_eval_passes(monkeypatch):
    """On the CPU, Dynamo's eager backend standing in for inductor: the second process's work
    builds the pack, compiles its tails in training and evaluation mode and reports it."""
    compiled = []
    compile_ = torch.compile

    def recording(f, **kw):
        compiled.append(getattr(f, "__name__", repr(f)))
        return compile_(f, backend="eager", **kw)

    monkeypatch.setattr(torch, "compile", recording)
    cfgs = [cfg(f"model.init={i}", "dataset.options.n_train=16", "dataset.options.n_val=8") for i in ("inv", "lin")]
    assert precompile.run(cfgs, device="cpu").startswith("compiled (compile cache:")
    assert compiled  # the packed tails (and on a GPU the FFT convolution's pieces)


def test_main_reads_and_removes_its_config_file(monkeypatch):
    from omegaconf import OmegaConf

    seen = []
    monkeypatch.setattr(precompile, "run", lambda cfgs: seen.append(cfgs) or "compiled")
    fd, path = tempfile.mkstemp(suffix=".yaml")
    os.close(fd)
    OmegaConf.save(OmegaConf.create({"members": [cfg(), cfg("model.init=lin")]}), path)
    assert precompile.main([path]) == 0
    assert not os.path.exists(path)
    assert [c.model.init for c in seen[0]] == ["inv", "lin"]


def test_a_failing_second_process_costs_nothing_but_its_time(monkeypatch, capsys):
    """Without CUDA the second process fails; ``wait`` reports it (SSM_TRACE) and returns, once."""
    monkeypatch.setattr(precompile, "_CHILD", {})
    monkeypatch.setattr("ssm_cli.trace.ENABLED", True)
    assert precompile.start([cfg()])
    assert not precompile.start([cfg()])  # one per process
    precompile.wait(limit_s=120)
    err = capsys.readouterr().err
    assert "precompiling in a second process" in err
    if not torch.cuda.is_available():
        assert "precompile failed" in err
    precompile.wait()  # nothing left to wait for
    assert not precompile.start([cfg()])


@pytest.mark.gpu
def test_a_run_after_its_precompile_finds_every_kernel_in_the_cache(tmp_path):
    """On a GPU, a fresh compile cache: with the second process, the run misses no compiled graph
    (it hits); without, it compiles them itself (misses)."""
    def run(precompile_flag: str, name: str) -> str:
        env = {**os.environ, "SSM_TRACE": "1", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / name / "cache")}
        p = subprocess.run([sys.executable, "-m", "ssm_cli.cli.main", "run", "preset=smoke", "dataset=synthetic",
                            "launcher.pack=2", "seeds=[0]", "model.init=inv", f"trainer.precompile={precompile_flag}",
                            f"out_dir={tmp_path / name}", "ablation=init", "trainer.precision=bf16-mixed"],
                           env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        return p.stderr

    with_it = run("true", "with")
    assert "precompile done" in with_it
    report = [line for line in with_it.splitlines() if "compile cache:" in line][-1]
    assert " 0 miss(es)" in report and " 0 hit(s)" not in report, report
    without = run("false", "without")
    report = [line for line in without.splitlines() if "compile cache:" in line][-1]
    assert " 0 miss(es)" not in report, report
