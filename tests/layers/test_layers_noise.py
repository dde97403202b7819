"""The Fourier-mode input noise of the PTD robustness test: off by default, its formula when on."""
import math

import torch

from ssm_cli.layers import build
from ssm_cli.layers.base import set_input_noise


def test_noise_off_by_default_and_only_changes_outputs_when_on():
    for name, opts in (("s4d", {}), ("s5", {}), ("s4", {"l_max": 16})):
        core = build(name, 3, 8, seed=0, **opts).double()
        u = torch.randn(2, 16, 3, dtype=torch.float64)
        y0 = core(u)
        torch.testing.assert_close(core(u), y0, rtol=0, atol=0)  # deterministic without noise
        set_input_noise(core, 0.1, 325.4)
        assert not torch.allclose(core(u), y0)
        set_input_noise(core, 0.0)
        torch.testing.assert_close(core(u), y0, rtol=0, atol=0)


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
    # the noise enters the SSM's input, not the residual branch the core returns
    torch.manual_seed(7)
    y, res = core(u, residual=True)
    assert res is u
    set_input_noise(core, 0.0)
    torch.testing.assert_close(y, core(noisy), rtol=1e-12, atol=1e-12)
