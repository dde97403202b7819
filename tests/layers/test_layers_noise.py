"""The Fourier-mode input noise of the PTD robustness test: off by default, its formula when on,
and on the real network path (``SequenceModel``: the backbone adds it before the shared FFT of
convolution cores and before the ``forward`` of other cores), never on the residual."""
import math

import pytest
import torch

from ssm_cli.layers import SequenceModel, build
from ssm_cli.layers.base import set_input_noise

CORES = (("s4d", {}), ("dss", {}), ("s4", {"l_max": 16}), ("s5", {}))


def _model(core: str, opts: dict, n_layers: int = 2) -> SequenceModel:
    torch.manual_seed(0)
    m = SequenceModel(2, 3, d_model=4, n_layers=n_layers, core=core, d_state=8, core_options=dict(opts, seed=0),
                      dropout=0.0).double()
    return m.eval()


@pytest.mark.parametrize("core,opts", CORES)
def test_network_noise_off_by_default_and_only_changes_outputs_when_on(core, opts):
    m = _model(core, opts)
    x = torch.randn(2, 16, 2, dtype=torch.float64)
    y0 = m(x)
    torch.testing.assert_close(m(x), y0, rtol=0, atol=0)  # deterministic without noise
    set_input_noise(m, 0.1, 325.4)
    assert all(c.noise_amplitude == 0.1 for c in (b.core for b in m.blocks))
    assert (m(x) - y0).abs().max() > 1e-6
    set_input_noise(m, 0.0)
    torch.testing.assert_close(m(x), y0, rtol=0, atol=0)


@pytest.mark.parametrize("core,opts", (CORES[0], CORES[3]))  # one FFT convolution core, one forward core
def test_network_noise_enters_the_core_input_not_the_residual(core, opts):
    """SequenceModel (one post-norm block) with noise = the same block computed by hand: the core
    on h + noise (the same draw), the residual on the clean h."""
    m = _model(core, opts, n_layers=1)
    blk = m.blocks[0]
    assert blk.core.is_depthwise_conv == (core == "s4d")  # both backbone paths are exercised
    x = torch.randn(2, 16, 2, dtype=torch.float64)
    set_input_noise(m, 0.5, 100.0)
    torch.manual_seed(7)
    got = m(x)
    h = m.encoder(x)  # (B L H): the block's input and residual stream
    torch.manual_seed(7)
    noisy = blk.core.add_input_noise(h)
    set_input_noise(m, 0.0)
    y = blk.core(noisy)  # the core alone, no noise of its own
    n = blk.norm.norm
    out = blk.post(y, h, blk.out.weight[None], blk.out.bias[None], n.weight[None], n.bias[None])  # (B L H)
    torch.testing.assert_close(got, m.decoder(out.mean(1)), rtol=1e-12, atol=1e-12)
    # and the noise was there: the clean network differs
    assert (m(x) - got).abs().max() > 1e-6


def test_noise_matches_formula_by_hand():
    core = build("s4d", 2, 4, seed=0).double()
    with torch.no_grad():
        core.log_dt.copy_(torch.tensor([math.log(0.01), math.log(0.1)], dtype=torch.float64))
    core.dt_transform = "exp"
    set_input_noise(core, 0.5, 100.0)
    u = torch.zeros(1, 3, 2, dtype=torch.float64)
    torch.manual_seed(7)
    noisy = core.add_input_noise(u)
    torch.manual_seed(7)
    r = torch.rand(1, 1, 2, dtype=torch.float64)[0, 0]  # the same draw: one per (batch, channel)
    # channel 0: dt 0.01, t = 0, 0.01, 0.02 -> cos(0), cos(1), cos(2); channel 1: dt 0.1 -> cos(0), cos(10), cos(20)
    expect = torch.tensor([[0.5 * r[0] * math.cos(0.0), 0.5 * r[1] * math.cos(0.0)],
                           [0.5 * r[0] * math.cos(1.0), 0.5 * r[1] * math.cos(10.0)],
                           [0.5 * r[0] * math.cos(2.0), 0.5 * r[1] * math.cos(20.0)]], dtype=torch.float64)
    torch.testing.assert_close(noisy[0], expect, rtol=1e-12, atol=1e-12)
    set_input_noise(core, 0.0)
    torch.testing.assert_close(core.add_input_noise(u), u, rtol=0, atol=0)  # off: u itself
