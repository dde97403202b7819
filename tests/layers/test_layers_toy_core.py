"""A core added from this file alone (no edit elsewhere): a depthwise exponential-decay convolution.

It is registered here, trained in a smoke run alone and in a pack beside S4D, and a pack of
[toy, S4D] gives each member the gradient it gets alone. A second toy core that overrides
``forward`` (a recurrence, not an FFT: the route a MIMO/scan core takes) packs as well.
"""
import copy
import math
import shutil

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from ssm_cli.layers.base import SSMCore
from ssm_cli.layers.packed import PackedModel
from ssm_cli.layers.registry import register_core, unregister_core
from ssm_cli.values import Range

TOY_OPTIONS = {"decay_max": (Range(0, lo_open=True), 0.5), "seed": ((int, type(None)), None)}


class ToyCore(SSMCore):
    """k[h, l] = c_h exp(-a_h dt l), a_h > 0 per channel, plus D: a depthwise convolution."""

    def __init__(self, d_model: int, d_state: int, *, decay_max: float, seed: int | None):
        super().__init__()
        self.d_model, self.channels, self.bidirectional = d_model, 1, False
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.log_a = nn.Parameter(torch.log(torch.rand(d_model, generator=gen) * decay_max + 1e-3))  # (H)
        self.c = nn.Parameter(torch.randn(1, d_model, generator=gen))  # (1 H)
        self._init_D(gen)

    def kernel(self, L: int, rate: float = 1.0) -> torch.Tensor:
        t = torch.arange(L, dtype=self.c.dtype, device=self.c.device)  # (L)
        return self.c[..., None] * torch.exp(-torch.exp(self.log_a)[:, None] * rate * t)  # (1 H L)


class ScanToyCore(ToyCore):
    """The same system run as its recurrence x_t = exp(-a dt) x_{t-1} + u_t, y = c x + D u."""

    def forward(self, u: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        decay = torch.exp(-torch.exp(self.log_a) * rate).to(u.dtype)  # (H)
        x, ys = torch.zeros_like(u[:, 0]), []
        for t in range(u.shape[1]):
            x = decay * x + u[:, t]  # (B H)
            ys.append(self.c[0].to(u.dtype) * x + self.D[0].to(u.dtype) * u[:, t])
        return torch.stack(ys, 1)  # (B L H)


@pytest.fixture
def toy():
    register_core("toy", options=TOY_OPTIONS, doc="toy exponential-decay convolution", replace=True)(ToyCore)
    register_core("toy_scan", options=TOY_OPTIONS, doc="toy decay as a recurrence", replace=True)(ScanToyCore)
    yield
    unregister_core("toy")
    unregister_core("toy_scan")


def _model(core: str, seed: int, **options):
    from ssm_cli.layers import SequenceModel
    torch.manual_seed(seed)
    return SequenceModel(3, 5, d_model=8, n_layers=2, d_state=4, dropout=0.0, core=core,
                         core_options=options).double()


def test_toy_scan_core_equals_the_toy_convolution(toy):
    conv, scan = _model("toy", 0), _model("toy_scan", 1)
    scan.load_state_dict(conv.state_dict())
    assert conv.blocks[0].core.is_depthwise_conv and not scan.blocks[0].core.is_depthwise_conv
    x = torch.randn(2, 12, 3, dtype=torch.float64)
    torch.testing.assert_close(scan(x), conv(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("toy_core", ["toy", "toy_scan"])
def test_pack_of_toy_and_s4d_gives_each_member_its_own_gradient(toy, toy_core):
    members = [_model(toy_core, 0), _model("s4d", 1, init="lin"), _model(toy_core, 2)]
    alone = copy.deepcopy(members)
    pack = PackedModel(members)
    x = torch.randn(4, 16, 3, dtype=torch.float64)
    y = torch.randint(0, 5, (4,))
    out = pack(x)  # (K B O)
    sum(F.cross_entropy(out[k], y) for k in range(len(members))).backward()
    for k, m in enumerate(alone):
        ref = m(x)
        torch.testing.assert_close(out[k], ref, rtol=1e-10, atol=1e-12)
        F.cross_entropy(ref, y).backward()
        for (n, p), (n2, q) in zip(m.named_parameters(), members[k].named_parameters(), strict=True):
            assert n == n2
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-12, msg=f"member {k} {n}")


@pytest.fixture
def toy_conf(toy, tmp_path, monkeypatch):
    """conf/ with a conf/model/toy.yaml (the S4D file's backbone keys, the toy's options)."""
    import ssm_cli.config as config
    from ssm_cli.model import BACKBONE_KEYS

    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    s4d = yaml.safe_load((conf / "model" / "s4d.yaml").read_text())
    toy_yaml = {k: v for k, v in s4d.items() if k in BACKBONE_KEYS or k == "d_state"}
    toy_yaml.update(core="toy", decay_max=0.5)
    (conf / "model" / "toy.yaml").write_text(yaml.safe_dump(toy_yaml))
    monkeypatch.setattr(config, "CONF_DIR", conf)
    return conf


def test_toy_core_trains_alone_and_in_a_pack_beside_s4d(toy_conf, tmp_path):
    from ssm_cli.train.grid import plan, prepare
    from ssm_cli.train.pack import pack_key
    from ssm_cli.train.run import execute_pack

    def runs(out, *extra):
        common = ["preset=smoke", "seeds=[0]", "dataset.options.n_train=32", "dataset.options.n_val=16",
                  "dataset.options.n_test=16", f"out_dir={tmp_path / out}", f"data_dir={tmp_path / 'data'}"]
        rs = plan([*common, *extra])
        for r in rs:
            prepare(r)
        return rs

    [toy_alone] = runs("alone", "model=toy")
    [toy_run] = runs("pack", "model=toy")
    [s4d_run] = runs("pack", "model=s4d")
    assert toy_run.cfg.model.core == "toy"
    assert pack_key(toy_run.cfg) == pack_key(s4d_run.cfg)  # launcher.pack=2 packs them together
    [alone] = execute_pack([toy_alone.run_dir])
    packed = execute_pack([toy_run.run_dir, s4d_run.run_dir])
    assert alone["status"] == "completed" and [r["status"] for r in packed] == ["completed", "completed"]
    for e, f in zip(packed[0]["epochs"], alone["epochs"], strict=True):
        for m in ("train_loss", "val_loss"):
            if m in e:
                assert math.isclose(e[m], f[m], rel_tol=1e-5), (m, e[m], f[m])
