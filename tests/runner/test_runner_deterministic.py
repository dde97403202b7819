"""``trainer.deterministic=true``: torch's deterministic algorithms (Lightning) and Inductor's
deterministic mode while a run trains, so that a run repeats bit for bit, also on a GPU where
Inductor would otherwise pick kernel configurations (summation orders) by timing them."""
import json
from pathlib import Path

import pytest
import torch

from ssm_cli.train.device import deterministic_compilation

SMOKE = ["preset=smoke", "dataset.options.n_train=64", "dataset.options.n_val=32", "dataset.options.n_test=32"]


def test_inductor_deterministic_mode_is_set_and_restored():
    import torch._inductor.config as inductor_config

    before = inductor_config.deterministic
    assert deterministic_compilation(True) == before
    assert inductor_config.deterministic is True
    assert deterministic_compilation(before) is True
    assert inductor_config.deterministic == before


def computed(out: Path) -> list:
    """What the runs under ``out`` computed: their metrics per epoch, timings left out."""
    rows = []
    for path in sorted(out.rglob("record.json")):
        r = json.loads(path.read_text())
        assert r["status"] == "completed", r
        rows.append([{k: v for k, v in e.items() if not k.endswith(("seconds", "samples_per_s"))} for e in r["epochs"]])
    return rows


def _repeat(ssm, tmp_path: Path, *extra: str) -> tuple[list, list]:
    outs = []
    for i in range(2):  # each with an empty compile cache: each compiles (and would time) afresh
        out = tmp_path / f"run{i}"
        ssm("run", *SMOKE, "trainer.deterministic=true", f"out_dir={out}", *extra,
            env={"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / f"inductor{i}")})
        outs.append(computed(out))
    return outs[0], outs[1]


def test_a_deterministic_run_repeats_exactly(ssm, tmp_path):
    first, second = _repeat(ssm, tmp_path)
    assert first and first == second


@pytest.mark.gpu
def test_a_deterministic_gpu_run_repeats_exactly(ssm, tmp_path):
    """A pack of five on the GPU (CUDA graph, compiled tails and spectral products, cuFFT in place):
    two runs, same numbers."""
    assert torch.cuda.is_available()
    first, second = _repeat(ssm, tmp_path, "ablation=init", "seeds=[0]", "launcher.pack=5", "model.d_model=64",
                            "trainer.limit_train_batches=20", "trainer.precision=bf16-mixed")
    assert len(first) == 5
    assert first and first == second


def test_a_run_with_trainer_deterministic_sets_the_mode_while_it_trains(tmp_path, monkeypatch):
    """``_fit`` switches Inductor's deterministic mode on for the run and back afterwards; a run
    without ``trainer.deterministic`` leaves it alone."""
    import torch._inductor.config as inductor_config

    from ssm_cli.train import device
    from ssm_cli.train import run as run_module
    from ssm_cli.train.grid import plan, prepare

    calls = []
    real = device.deterministic_compilation

    def spy(on):
        calls.append(bool(on))
        return real(on)

    monkeypatch.setattr(device, "deterministic_compilation", spy)
    before = inductor_config.deterministic
    for flag, expected in (("true", [True, before]), ("false", [])):
        calls.clear()
        (planned,) = plan([*SMOKE, f"trainer.deterministic={flag}", f"out_dir={tmp_path / flag}"])
        prepare(planned)
        record = run_module.execute(planned.run_dir, progress=False)
        assert record["status"] == "completed", record
        assert calls == expected
        assert inductor_config.deterministic == before
