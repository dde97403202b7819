"""S4D / DSS core: convolution = recurrence, kernel = brute force, inits = formulas, options."""
import itertools
import math
import os
import tempfile

import numpy as np
import pytest
import scipy.linalg
import torch

os.environ.setdefault("SSM_PTD_CACHE", tempfile.mkdtemp(prefix="ssm-ptd-"))

from ssm_cli.errors import UserError  # noqa: E402
from ssm_cli.layers import CORE_OPTIONS, build  # noqa: E402
from ssm_cli.layers.hippo import normal_part  # noqa: E402
from ssm_cli.layers.kernel import vandermonde, vandermonde_reference  # noqa: E402
from ssm_cli.values import Range, accepts  # noqa: E402

INITS = ("inv", "lin", "legs", "real", "rand", "ptd")
DISCS = ("zoh", "bilinear", "dss")
TRANSFORMS = ("exp", "relu", "sigmoid", "softplus", "none")


def _run_recurrent(core, u, **kw):
    s = core.init_state(u.shape[0])
    ys = []
    for t in range(u.shape[1]):
        y, s = core.step(u[:, t], s, **kw)
        ys.append(y)
    return torch.stack(ys, 1)


@pytest.mark.parametrize("init,disc,rt", list(itertools.product(INITS, DISCS, TRANSFORMS)))
def test_convolution_equals_recurrence(init, disc, rt):
    torch.manual_seed(0)
    kw = dict(init=init, disc=disc, real_transform=rt, seed=1, dt_min=0.01, dt_max=0.5)
    if init in ("real", "ptd") and rt == "sigmoid":  # sigmoid cannot represent real parts below -1
        with pytest.raises(UserError, match="sigmoid"):
            build("s4d", 3, 8, **kw)
        return
    core = build("s4d", 3, 8, channels=2, **kw).double()
    u = torch.randn(2, 37, 3, dtype=torch.float64)
    y_conv = core(u)
    y_rec = _run_recurrent(core, u, L=37)
    assert y_conv.shape == (2, 37, 6)
    torch.testing.assert_close(y_conv, y_rec, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("it", ("exp", "relu", "sigmoid", "softplus", "none"))
def test_imag_transform_recurrence(it):
    init = "rand" if it == "sigmoid" else "lin"
    if it == "sigmoid":  # keep imaginary parts inside (0, 1)
        kw = dict(init="rand", imag_scale=0.1)
    else:
        kw = dict(init=init)
    core = build("s4d", 2, 6, imag_transform=it, seed=0, **kw).double()
    u = torch.randn(1, 20, 2, dtype=torch.float64)
    torch.testing.assert_close(core(u), _run_recurrent(core, u), rtol=1e-9, atol=1e-9)


def _brute_force_kernel(core, L, rate=1.0):
    """Independent numpy kernel: Abar, Bbar of each mode from scipy expm (ZOH) or the bilinear formula."""
    A = core.eigenvalues().detach().numpy().astype(np.complex128)  # (S M)
    S = A.shape[0]
    B = torch.view_as_complex(core.B.detach().contiguous()).numpy().astype(np.complex128)  # (S M)
    C = torch.view_as_complex(core.C.detach().contiguous()).numpy().astype(np.complex128)  # (C H M)
    dt = np.exp(core.log_dt.detach().numpy().astype(np.float64)) * rate  # (H)
    Cn, H, M = C.shape
    K = np.zeros((Cn, H, L))
    for h in range(H):
        for m in range(M):
            a, b = A[h % S, m], B[h % S, m]
            if core.disc in ("zoh", "dss"):
                E = scipy.linalg.expm(dt[h] * np.array([[a, b], [0, 0]]))
                abar, bbar = E[0, 0], E[0, 1]
                if core.disc == "dss":
                    bbar = bbar / sum(abar ** l for l in range(L))
            else:
                abar = (1 + dt[h] * a / 2) / (1 - dt[h] * a / 2)
                bbar = dt[h] / (1 - dt[h] * a / 2) * b
            for c in range(Cn):
                K[c, h] += 2 * np.real(C[c, h, m] * bbar * abar ** np.arange(L))
    return K


@pytest.mark.parametrize("disc", DISCS)
@pytest.mark.parametrize("init", ("inv", "legs"))
def test_kernel_equals_brute_force_sum(disc, init):
    core = build("s4d", 3, 8, init=init, disc=disc, channels=2, n_ssm=1, B_init="random", seed=3,
                 dt_transform="exp").double()
    L = 300  # more than one Vandermonde block
    K = core.kernel(L).detach().numpy()
    np.testing.assert_allclose(K, _brute_force_kernel(core, L), rtol=1e-9, atol=1e-11)


def test_vandermonde_blocks_float32_vs_float64():
    torch.manual_seed(0)
    H, M, L = 4, 16, 16384
    log_Abar = torch.complex(-torch.rand(H, M, dtype=torch.float64) * 1e-3, torch.rand(H, M, dtype=torch.float64))
    W = torch.randn(1, H, M, dtype=torch.complex128)
    k64 = vandermonde(W, log_Abar, L)
    k64_one_block = vandermonde(W, log_Abar, L, block=L)
    torch.testing.assert_close(k64, k64_one_block, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(vandermonde(W, log_Abar, 50), vandermonde_reference(W, log_Abar, 50))
    k32 = vandermonde(W.to(torch.complex64), log_Abar.to(torch.complex64), L)
    assert (k32.double() - k64).abs().max() < 2e-3 * k64.abs().max()


def test_dss_softmax_kernel_sums_to_CB():
    core = build("dss", 2, 8, seed=0).double()
    L = 64
    K = core.kernel(L)  # (1 H L)
    log_Abar, W = core._discrete(1.0, L)  # (H M), (C H M) with W = 2 C Bbar / sum_l Abar^l
    geo = torch.expm1(log_Abar * L) / torch.expm1(log_Abar)
    torch.testing.assert_close(K.sum(-1), (W * geo).sum(-1).real)
    assert build("dss", 2, 8, variant="exp").disc == "zoh"
    assert "B" in dict(build("dss", 2, 8).named_buffers())


def test_inits_match_formulas():
    N = 16
    n = np.arange(N // 2)
    lin = build("s4d", 4, N, init="lin", real_transform="none", n_ssm=None).eigenvalues().detach().numpy()
    np.testing.assert_allclose(lin[0], -0.5 + 1j * np.pi * n, rtol=1e-6)
    inv = build("s4d", 4, N, init="inv", real_transform="none", n_ssm=None).eigenvalues().detach().numpy()
    np.testing.assert_allclose(inv[0], -0.5 + 1j * (N / np.pi) * (N / (2 * n + 1) - 1), rtol=1e-6)
    real = build("s4d", 4, N, init="real", real_transform="none", n_ssm=None).eigenvalues().detach().numpy()
    np.testing.assert_allclose(real[0], -(n + 1.0) + 0j, rtol=1e-6)
    legs = build("s4d", 4, N, init="legs", n_ssm=None).eigenvalues().detach().numpy()  # exp transform
    ev = np.linalg.eigvals(normal_part("legs", N))
    ev = ev[ev.imag > 0]
    np.testing.assert_allclose(np.sort(legs[2].imag), np.sort(ev.imag), rtol=1e-5)
    np.testing.assert_allclose(legs[2].real, ev.real, rtol=1e-5)
    rand = build("s4d", 4, N, init="rand", seed=0, n_ssm=None).eigenvalues().detach().numpy()
    np.testing.assert_allclose(rand.real, -0.5, rtol=1e-5)
    assert np.all(rand.imag > 0) and np.unique(rand.imag).size == rand.size
    rr = build("s4d", 4, N, init="lin", real_random=True, seed=0).eigenvalues().detach().numpy()
    assert np.all(rr.real < 0) and np.all(rr.real >= -1) and np.unique(rr.real).size > 1
    ir = build("s4d", 4, N, init="lin", imag_random=True, seed=0).eigenvalues().detach().numpy()
    assert np.all((ir.imag >= 0) & (ir.imag <= np.pi * N / 2)) and not np.allclose(ir[0].imag, np.pi * n)
    sc = build("s4d", 4, N, init="lin", real_scale=2.0, imag_scale=0.5).eigenvalues().detach().numpy()
    np.testing.assert_allclose(sc[0], -1.0 + 0.5j * np.pi * n, rtol=1e-5)


def test_legs_diagonal_system_equals_dense_normal_part():
    """S4D-LegS (N/2 modes, B from HiPPO) = the dense N-state system (S, B_hippo) with S the normal part.

    Dense reference: ZOH by scipy expm of the (N+1)x(N+1) augmented matrix, powers of Abar in float64.
    """
    from ssm_cli.layers.hippo import nplr
    N, L = 8, 40
    core = build("s4d", 1, N, init="legs", real_transform="none", seed=0, dt_transform="exp").double()
    lam, _, Bt, V = nplr("legs", N)
    c = np.random.default_rng(0).standard_normal(N)  # real output row of the dense system
    with torch.no_grad():  # parameters were stored in float32: put the float64 values back
        core.A_real.copy_(torch.tensor(-lam.real)[None])
        core.A_imag.copy_(torch.tensor(lam.imag)[None])
        core.B.copy_(torch.view_as_real(torch.tensor(Bt))[None])
        core.C.copy_(torch.view_as_real(torch.tensor(c @ V))[None, None])
    dt = float(torch.exp(core.log_dt.detach()[0]))
    S, Bh = normal_part("legs", N), np.sqrt(2 * np.arange(N) + 1.0)
    aug = np.zeros((N + 1, N + 1))
    aug[:N, :N], aug[:N, N] = S, Bh
    E = scipy.linalg.expm(dt * aug)
    Abar, Bbar = E[:N, :N], E[:N, N]
    ref, x = [], Bbar.copy()
    for _ in range(L):
        ref.append(c @ x)
        x = Abar @ x
    np.testing.assert_allclose(core.kernel(L)[0, 0].detach().numpy(), np.array(ref), rtol=1e-8, atol=1e-10)


def test_bidirectional_matches_explicit_sum():
    core = build("s4d", 2, 8, bidirectional=True, seed=0).double()
    L = 12
    u = torch.randn(1, L, 2, dtype=torch.float64)
    k = core.kernel(L)  # (2 C H L)
    assert k.shape == (2, 1, 2, L)
    y = core(u)[0]  # (L H)
    for t in range(L):
        for h in range(2):
            ref = sum(k[0, 0, h, t - s] * u[0, s, h] for s in range(t + 1))
            ref += sum(k[1, 0, h, s - t - 1] * u[0, s, h] for s in range(t + 1, L))
            ref += core.D[0, h] * u[0, t, h]
            assert abs(float((y[t, h] - ref).detach())) < 1e-10
    with pytest.raises(UserError):
        core.init_state(1)


@pytest.mark.parametrize("name,opts", [("s4d", {}), ("s4d", {"disc": "bilinear"}), ("s4d", {"init": "legs"}),
                                       ("dss", {"variant": "exp"}), ("s4", {}), ("s4", {"init": "fout"})])
def test_zero_shot_rate_change(name, opts):
    """Rate 2 on a signal subsampled by 2 approximates rate 1 on the original (and rate 1 does not)."""
    torch.manual_seed(0)
    core = build(name, 4, 16, dt_min=0.001, dt_max=0.01, seed=0, **opts).double()
    with torch.no_grad():
        core.D.zero_()
    L = 4000
    t = torch.arange(L, dtype=torch.float64)
    u = torch.stack([torch.sin(2 * math.pi * t / (400 + 97 * h)) for h in range(4)], -1)[None]  # (1 L 4)
    with torch.no_grad():
        y_full = core(u)[:, 1::2]
        y_half_rate2 = core(u[:, 1::2], rate=2.0)
        y_half_rate1 = core(u[:, 1::2], rate=1.0)
    err2 = (y_half_rate2 - y_full).norm() / y_full.norm()
    err1 = (y_half_rate1 - y_full).norm() / y_full.norm()
    assert err2 < 0.02, err2
    assert err1 > 0.3, err1


@pytest.mark.parametrize("variant", ("softmax", "exp"))
def test_dss_preset_convolution_equals_recurrence(variant):
    core = build("dss", 3, 8, variant=variant, seed=0).double()
    u = torch.randn(2, 25, 3, dtype=torch.float64)
    torch.testing.assert_close(core(u), _run_recurrent(core, u, L=25), rtol=1e-9, atol=1e-9)


def test_gradients_finite_long_sequence():
    core = build("s4d", 2, 8, seed=0)
    u = torch.randn(1, 16384, 2)
    core(u).square().mean().backward()
    for name, p in core.named_parameters():
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("rt", ("relu", "none"))
@pytest.mark.parametrize("init", ("inv", "real", "legs"))
def test_gradients_finite_relu_none(rt, init):
    core = build("s4d", 2, 8, init=init, real_transform=rt, imag_transform=rt, seed=0)
    core(torch.randn(2, 1024, 2)).square().mean().backward()
    for name, p in core.named_parameters():
        assert torch.isfinite(p.grad).all(), name


def test_frozen_B_has_no_gradient():
    core = build("s4d", 2, 8, trainable_B=False)
    assert "B" in dict(core.named_buffers()) and "B" not in dict(core.named_parameters())
    core(torch.randn(1, 16, 2)).sum().backward()
    assert core.B.grad is None and not core.B.requires_grad


def test_n_ssm_shares_A_B():
    core = build("s4d", 6, 8, n_ssm=2, seed=0)
    assert core.A_real.shape == (2, 4) and core.eigenvalues().shape == (2, 4)
    with pytest.raises(UserError, match="divide"):
        build("s4d", 6, 8, n_ssm=4)


def test_build_rejects_bad_options():
    with pytest.raises(UserError, match="unknown init 'foo'; valid: inv, lin, legs, real, rand, ptd"):
        build("s4d", 4, 8, init="foo")
    with pytest.raises(UserError, match="unknown option 'nope'"):
        build("s4d", 4, 8, nope=1)
    with pytest.raises(UserError, match="unknown core"):
        build("s5", 4, 8)
    with pytest.raises(UserError):
        build("s4d", 4, 8, trainable_B=1)
    with pytest.raises(UserError):
        build("s4d", 4, 8, dt_min="0.1")
    with pytest.raises(UserError, match="imag_random"):
        build("s4d", 4, 8, init="legs", imag_random=True)
    with pytest.raises(UserError, match="real_random"):
        build("s4d", 4, 8, init="real", real_random=True)
    with pytest.raises(UserError, match="channels"):
        build("s4d", 4, 8, channels=0)
    with pytest.raises(UserError, match="d_state must be even"):
        build("s4", 4, 7)
    with pytest.raises(UserError, match="valid: zoh, bilinear, dss"):
        build("s4d", 4, 8, disc="euler")
    for core, table in CORE_OPTIONS.items():
        for opt, (valid, default) in table.items():
            if isinstance(valid, Range):  # a number's range: the default is inside it
                assert accepts(valid, default), (core, opt)
                continue
            assert default is None or isinstance(valid, type) or default in valid or isinstance(default, valid), (core, opt)


@pytest.mark.parametrize("name", ("s4d", "s4", "dss"))
@pytest.mark.parametrize("L", (1, 2, 3, 257))
def test_short_and_odd_lengths(name, L):
    core = build(name, 3, 8, seed=0).double()
    u = torch.randn(2, L, 3, dtype=torch.float64)
    torch.testing.assert_close(core(u), _run_recurrent(core, u, L=L), rtol=1e-8, atol=1e-9)


def test_ieee_matmul_gradients():
    from ssm_cli.layers.kernel import IEEEMatmul
    a = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(IEEEMatmul.apply, (a, b))
    torch.testing.assert_close(IEEEMatmul.apply(a, b), a @ b)


def test_legs_B_imaginary_part_clipped_as_the_reference():
    """S4D-LegS's B = V^* B_hippo with Im B clipped to [-2, 2] (the reference's nplr B_clip)."""
    from ssm_cli.layers.hippo import nplr
    from ssm_cli.layers.init import diagonal_init
    N = 16
    _, _, Bt, _ = nplr("legs", N)
    _, B = diagonal_init("legs", N)
    assert np.abs(Bt.imag).max() > 2.5  # the clip does something at this size
    np.testing.assert_allclose(B[0].real, Bt.real)
    np.testing.assert_allclose(B[0].imag, np.clip(Bt.imag, -2.0, 2.0))


def test_dt_transform_softplus_same_dt_and_kernel():
    """dt = softplus(raw) stores the same initial dt as exp(raw); the kernels agree, also packed."""
    from ssm_cli.layers.cores.s4d import DiagonalSSM
    e = build("s4d", 4, 8, seed=3, bidirectional=True, dt_transform="exp").double()
    s = build("s4d", 4, 8, seed=3, bidirectional=True, dt_transform="softplus").double()
    torch.testing.assert_close(torch.nn.functional.softplus(s.log_dt), torch.exp(e.log_dt), rtol=1e-6, atol=0)
    torch.testing.assert_close(s.kernel(20), e.kernel(20), rtol=1e-5, atol=1e-7)
    assert s.kernel_batch_key() != e.kernel_batch_key()
    s2 = build("s4d", 4, 8, seed=4, bidirectional=True, dt_transform="softplus").double()
    torch.testing.assert_close(DiagonalSSM.batch_conv_kernel([s, s2], 20),
                               torch.cat([s.conv_kernel(20), s2.conv_kernel(20)], dim=1))
    with pytest.raises(UserError, match="dt_transform"):
        build("s4d", 4, 8, dt_transform="sigmoid")
