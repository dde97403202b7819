"""The one device decision (``train/device.py``) and ``make_units(dry_run=True)`` writing nothing."""
import json

import torch
from omegaconf import OmegaConf

from ssm_cli.train import device
from ssm_cli.train.pack import make_units
from ssm_cli.train.record import CHECKPOINT


def trainer(accelerator: str, compile="auto", deterministic=False):
    return OmegaConf.create({"trainer": {"accelerator": accelerator, "compile": compile,
                                         "matmul_precision": "highest", "deterministic": deterministic}})


def test_the_device_decision(monkeypatch):
    for available in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        assert device.uses_cuda(trainer("auto")) is available
        assert device.resolve_device(trainer("auto")).type == ("cuda" if available else "cpu")
        assert device.compiles(trainer("auto")) is available  # auto: compile on the GPU
        assert device.uses_cuda(trainer("cpu")) is False and device.compiles(trainer("cpu")) is False
        assert device.uses_cuda(trainer("gpu")) is True and device.uses_cuda(trainer("cuda")) is True
        assert device.compiles(trainer("cpu", compile=True)) is True
        assert device.compiles(trainer("gpu", compile=False)) is False


def test_torch_flags_set_while_inside_and_restore_inductor():
    import torch._inductor.config as inductor_config

    before_mode, before_precision = inductor_config.deterministic, torch.get_float32_matmul_precision()
    try:
        with device.torch_flags(trainer("cpu", deterministic=True)):
            assert inductor_config.deterministic is True
            assert torch.get_float32_matmul_precision() == "highest"
        assert inductor_config.deterministic == before_mode
    finally:
        torch.set_float32_matmul_precision(before_precision)


class Run:
    def __init__(self, run_dir):
        self.run_dir = run_dir


def test_make_units_dry_run_forms_the_units_and_writes_nothing(tmp_path):
    """Members of an interrupted pack that cannot be formed again (pack size 1) run alone; a real
    plan cuts their checkpoints out of the pack's, a dry run only says so."""
    pdir = tmp_path / "packs" / "p"
    pdir.mkdir(parents=True)
    (pdir / CHECKPOINT).write_bytes(b"not a checkpoint: a dry run must not read it")
    runs = [Run(tmp_path / f"r{k}") for k in range(2)]
    members = [str(r.run_dir) for r in runs]
    for k, r in enumerate(runs):
        r.run_dir.mkdir()
        record = {"status": "interrupted", "pack": {"dir": str(pdir), "index": k, "members": members}}
        (r.run_dir / "record.json").write_text(json.dumps(record))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert make_units(runs, 1, dry_run=True) == [[runs[0]], [runs[1]]]
    assert make_units(runs, 2, dry_run=True) == [runs]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not any((r.run_dir / CHECKPOINT).exists() for r in runs)
