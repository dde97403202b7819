"""S5: parallel scan = sequential loop = step loop (forward and gradients), its init and options."""
import os
import tempfile

import numpy as np
import pytest
import torch

os.environ.setdefault("SSM_PTD_CACHE", tempfile.mkdtemp(prefix="ssm-ptd-"))

from ssm_cli.errors import UserError  # noqa: E402
from ssm_cli.layers import build  # noqa: E402
from ssm_cli.layers.hippo import normal_part  # noqa: E402
from ssm_cli.layers.optim import param_groups  # noqa: E402
from ssm_cli.layers.scan import scan, scan_sequential  # noqa: E402

FAST_PTD = dict(ptd_steps=200)


def test_scan_equals_loop_any_length():
    g = torch.Generator().manual_seed(0)
    for L in (1, 2, 5, 16, 33):
        a = torch.complex(torch.rand(4, dtype=torch.float64, generator=g) * 0.9, torch.randn(4, dtype=torch.float64, generator=g) * 0.3)
        b = torch.randn(3, L, 4, dtype=torch.complex128, generator=g)
        for rev in (False, True):
            torch.testing.assert_close(scan(a, b, rev), scan_sequential(a, b, rev), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("opts", [dict(), dict(conj_sym=False), dict(bidirectional=True), dict(disc="bilinear", blocks=2),
                                  dict(init="ptd", **FAST_PTD), dict(C_init="complex_normal", clip_eigs=True)])
def test_s5_scan_equals_sequential_forward_and_grad(opts):
    core = build("s5", 3, 8, seed=0, **opts).double()
    u = torch.randn(2, 37, 3, dtype=torch.float64, requires_grad=True)
    y_fast, y_ref = core(u), core.forward_sequential(u)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(y_fast)
    grads_fast = torch.autograd.grad((y_fast * g).sum(), [u, *core.parameters()])
    grads_ref = torch.autograd.grad((y_ref * g).sum(), [u, *core.parameters()])
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    if not core.bidirectional:  # the recurrent view
        s, ys = core.init_state(2), []
        for t in range(u.shape[1]):
            y, s = core.step(u[:, t], s)
            ys.append(y)
        torch.testing.assert_close(torch.stack(ys, 1), y_fast, rtol=1e-10, atol=1e-10)


def test_s5_conj_sym_equals_full_spectrum():
    """conj_sym keeps one mode of each pair and doubles Re: the same SSM as the full P modes with C~ = C V."""
    H, P, L = 2, 8, 20
    half = build("s5", H, P, seed=0).double()
    full = build("s5", H, P, seed=0, conj_sym=False).double()
    lam_h = half.eigenvalues().detach()
    assert lam_h.shape == (P // 2,) and torch.allclose(lam_h.real, torch.full((P // 2,), -0.5, dtype=torch.float64))
    # build the full system's parameters from the half one's: modes (lam, conj lam), B~, C~ conjugated
    with torch.no_grad():
        full.Lambda_re.copy_(torch.cat([lam_h.real, lam_h.real]))
        full.Lambda_im.copy_(torch.cat([lam_h.imag, -lam_h.imag]))
        full.log_step.copy_(torch.cat([half.log_step, half.log_step]))
        Bh, Ch = torch.view_as_complex(half.B), torch.view_as_complex(half.C)
        full.B.copy_(torch.view_as_real(torch.cat([Bh, Bh.conj()])))
        full.C.copy_(torch.view_as_real(torch.cat([Ch, Ch.conj()], -1)))
        full.D.copy_(half.D)
    u = torch.randn(2, L, H, dtype=torch.float64)
    torch.testing.assert_close(full(u), half(u), rtol=1e-10, atol=1e-10)


def test_s5_init_diagonalises_hippo_n_blocks():
    P, J = 8, 2
    core = build("s5", 2, P, blocks=J, conj_sym=False, seed=0).double()
    lam = core.eigenvalues().detach().numpy()
    ref = np.linalg.eigvals(normal_part("legs", P // J))
    by_imag = lambda z: z[np.argsort(z.imag)]  # noqa: E731
    np.testing.assert_allclose(by_imag(lam[: P // J]), by_imag(ref), atol=1e-6)
    np.testing.assert_allclose(lam[: P // J], lam[P // J:])  # J identical blocks


def test_s5_ptd_init_and_errors():
    core = build("s5", 2, 8, init="ptd", seed=0, **FAST_PTD)
    assert not core.conj_sym and core.eigenvalues().shape == (8,)
    assert torch.all(core.eigenvalues().real < 0)
    with pytest.raises(UserError, match="conj"):
        build("s5", 2, 8, init="ptd", conj_sym=True, **FAST_PTD)
    with pytest.raises(UserError, match="blocks"):
        build("s5", 2, 8, blocks=3)
    with pytest.raises(UserError, match="C_init"):
        build("s5", 2, 8, C_init="ones")
    with pytest.raises(UserError, match="kernel"):
        build("s5", 2, 8).kernel(4)


@pytest.mark.parametrize("opt_config,lr_factor,expect", [
    ("standard", None, {"B": (1e-3, 0.0), "C": "default", "D": "default"}),
    ("noBCdecay", None, {"B": (1e-3, 0.0), "C": (1e-3, 0.0), "D": (1e-3, 0.0)}),
    ("BfastandCdecay", 4.0, {"B": (4e-3, 0.05), "C": (4e-3, 0.05), "D": (4e-3, 0.05)}),
    ("BandCdecay", None, {"B": (0.0, 0.0), "C": "default"}),
])
def test_s5_optimizer_groups(opt_config, lr_factor, expect):
    core = build("s5", 2, 8, seed=0, opt_config=opt_config, lr_factor=lr_factor)
    groups = param_groups(core, lr=0.01, weight_decay=0.05)
    where = {n: ("default" if i == 0 else (g["lr"], g["weight_decay"])) for i, g in enumerate(groups) for n in g["param_names"]}
    assert where["Lambda_re"] == where["log_step"] == (1e-3, 0.0)
    for name, e in expect.items():
        assert where[name] == (e if e == "default" else pytest.approx(e)), (name, where)
