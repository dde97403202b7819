"""S4 (DPLR) core: HiPPO NPLR, Cauchy/Woodbury kernel = slow dense kernel, convolution = recurrence."""
import numpy as np
import pytest
import scipy.linalg
import torch

from ssm_cli.errors import UserError
from ssm_cli.layers import build
from ssm_cli.layers.hippo import hippo, low_rank, nplr, normal_part

MEASURES = ("legs", "legt", "fout")


@pytest.mark.parametrize("measure", MEASURES)
def test_nplr_reconstructs_hippo(measure):
    N = 16
    S = normal_part(measure, N)
    assert np.abs(S @ S.T - S.T @ S).max() < 1e-9 * np.abs(S).max() ** 2  # normal
    lam, P, B, V = nplr(measure, N)
    Vf = np.concatenate([V, V.conj()], 1)
    np.testing.assert_allclose(Vf.conj().T @ Vf, np.eye(N), atol=1e-12)  # unitary
    Pf = np.concatenate([P, P.conj()], 1)
    lamf = np.concatenate([lam, lam.conj()])
    A = Vf @ (np.diag(lamf) - Pf.T @ Pf.conj()) @ Vf.conj().T
    A_h, B_h = hippo(measure, N)
    np.testing.assert_allclose(A, A_h, atol=1e-10)
    np.testing.assert_allclose(Vf @ np.concatenate([B, B.conj()]), B_h, atol=1e-10)
    np.testing.assert_allclose(np.sort(lamf.imag), np.sort(np.linalg.eigvals(S).imag), atol=1e-9)


def test_hippo_legs_formula():
    A, B = hippo("legs", 4)
    r = np.sqrt(2 * np.arange(4) + 1.0)
    assert A[2, 1] == pytest.approx(-r[2] * r[1]) and A[1, 2] == 0 and A[3, 3] == -4
    np.testing.assert_allclose(B, r)
    np.testing.assert_allclose(low_rank("legs", 4)[0], np.sqrt(np.arange(4) + 0.5))


@pytest.mark.parametrize("measure", MEASURES)
def test_cauchy_woodbury_kernel_equals_dense(measure):
    core = build("s4", 3, 8, init=measure, channels=2, n_ssm=1, seed=0, dt_min=0.01, dt_max=0.2).double()
    for L in (49, 64):
        k = core.kernel(L)
        torch.testing.assert_close(k, core.kernel_reference(L), rtol=1e-9, atol=1e-11)
    # the dense system of the conjugate-symmetric parameters is real: Re() drops nothing
    with torch.no_grad():
        Abar, Bbar, C = core.dense(16)
    x = Bbar
    for _ in range(5):
        y = torch.einsum("chn,hn->ch", C, x)
        assert y.imag.abs().max() < 1e-10 * max(1.0, float(y.real.abs().max()))
        x = torch.einsum("hij,hj->hi", Abar, x)


def test_dense_bilinear_matches_scipy():
    """Independent check of the dense discretisation against the HiPPO matrix in the original basis."""
    N, L = 6, 20
    core = build("s4", 1, N, init="legs", real_transform="none", seed=0, dt_transform="exp").double()
    lam, P, B, V = nplr("legs", N)
    with torch.no_grad():
        core.A_real.copy_(torch.tensor(-lam.real)[None])
        core.A_imag.copy_(torch.tensor(lam.imag)[None])
        core.P.copy_(torch.view_as_real(torch.tensor(P))[:, None])
        core.B.copy_(torch.view_as_real(torch.tensor(B))[None])
    with torch.no_grad():
        Abar, Bbar, _ = core.dense()
    dt = float(torch.exp(core.log_dt.detach()[0]))
    A_h, B_h = hippo("legs", N)
    I = np.eye(N)
    Abar_h = scipy.linalg.solve(I - dt / 2 * A_h, I + dt / 2 * A_h)
    Vf = np.concatenate([V, V.conj()], 1)
    np.testing.assert_allclose(Vf @ Abar[0].numpy() @ Vf.conj().T, Abar_h, atol=1e-12)
    np.testing.assert_allclose(Vf @ Bbar[0].numpy(), scipy.linalg.solve(I - dt / 2 * A_h, dt * B_h), atol=1e-12)


@pytest.mark.parametrize("measure", MEASURES)
def test_s4_convolution_equals_recurrence(measure):
    core = build("s4", 2, 8, init=measure, seed=1, dt_min=0.01, dt_max=0.3).double()
    L = 30
    u = torch.randn(2, L, 2, dtype=torch.float64)
    s = core.init_state(2)
    ys = []
    for t in range(L):
        y, s = core.step(u[:, t], s, L=L)
        ys.append(y)
    torch.testing.assert_close(core(u), torch.stack(ys, 1), rtol=1e-8, atol=1e-9)
    with pytest.raises(UserError, match="pass L"):
        core.step(u[:, 0], core.init_state(2))


def test_s4_chunked_kernel_and_gradients():
    import ssm_cli.layers.cores.s4 as s4
    core = build("s4", 4, 8, seed=0)
    L = 4096
    k_one = core.kernel(L)
    old = s4._CHUNK_ELEMS
    try:
        s4._CHUNK_ELEMS = {"cpu": 4 * 8 * 100}  # ~100 frequencies per chunk: many chunks, checkpointed
        k = core.kernel(L)
        torch.testing.assert_close(k, k_one, rtol=1e-5, atol=1e-6)
        k.square().sum().backward()
    finally:
        s4._CHUNK_ELEMS = old
    for name, p in core.named_parameters():
        if name != "D":
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_s4_long_gradient_finite_and_bidirectional():
    core = build("s4", 2, 8, seed=0, bidirectional=True)
    core(torch.randn(1, 16384, 2)).square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in core.parameters())
    assert core.kernel(10).shape == (2, 1, 2, 10)


def test_s4_frozen_B_and_options():
    core = build("s4", 2, 8, trainable_B=False)
    assert "B" in dict(core.named_buffers())
    with pytest.raises(UserError, match="valid: legs, legt, fout"):
        build("s4", 2, 8, init="inv")
    with pytest.raises(UserError, match="unknown option 'disc'"):
        build("s4", 2, 8, disc="zoh")


# ---- the reference's defaults (model=s4): dt_transform, B_clip, C_init -------------------------------
def test_s4_dt_transform_same_initial_dt_and_kernel():
    a = build("s4", 4, 8, seed=3, dt_transform="exp").double()
    b = build("s4", 4, 8, seed=3, dt_transform="softplus").double()
    torch.testing.assert_close(b.dt(), a.dt(), rtol=1e-6, atol=0)
    torch.testing.assert_close(b.kernel(32), a.kernel(32), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(b.log_dt, a.log_dt)  # stored as softplus^-1(dt)
    with pytest.raises(UserError, match="valid: exp, softplus"):
        build("s4", 2, 8, dt_transform="sigmoid")


def test_s4_B_clip():
    free = build("s4", 2, 64, seed=0, B_clip=None)
    clip = build("s4", 2, 64, seed=0, B_clip=2.0)
    Bf, Bc = torch.view_as_complex(free.B), torch.view_as_complex(clip.B)
    assert Bf.imag.abs().max() > 2.5 and Bc.imag.abs().max() <= 2.0 + 1e-6  # the clip binds for LegS, N=64
    torch.testing.assert_close(Bc.real, Bf.real)
    keep = Bf.imag.abs() <= 2.0
    torch.testing.assert_close(Bc.imag[keep], Bf.imag[keep])
    with pytest.raises(UserError, match="B_clip"):
        build("s4", 2, 8, B_clip=0.0)


@pytest.mark.parametrize("measure", MEASURES)
def test_s4_C_init_C_stores_C_tilde_of_the_drawn_C(measure):
    """C_init C: the stored C~ = C0 (I - Abar^L); the length-L kernel is then the truncated impulse
    response of the system with output matrix C0 (the same draw C_init C_tilde stores as is)."""
    L = 24
    plain = build("s4", 3, 8, init=measure, seed=5, dt_min=0.01, dt_max=0.3, bidirectional=False).double()
    core = build("s4", 3, 8, init=measure, seed=5, dt_min=0.01, dt_max=0.3, C_init="C", l_max=L).double()
    C0 = torch.view_as_complex(plain.C)  # (C H M)
    torch.testing.assert_close(torch.view_as_complex(core.C), core.c_tilde(C0, L), rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        Abar, Bbar, C0f = plain.dense()  # C0 with its conjugates: (C H N)
    x, taps = Bbar, []
    for _ in range(L):
        taps.append(torch.einsum("chn,hn->ch", C0f, x).real)
        x = torch.einsum("hij,hj->hi", Abar, x)
    torch.testing.assert_close(core.kernel(L), torch.stack(taps, -1), rtol=1e-5, atol=1e-6)
    # the other direction: dense(L) recovers C0 from C~
    torch.testing.assert_close(core.dense(L)[2][..., :4], C0, rtol=1e-5, atol=1e-6)


def test_s4_C_init_needs_l_max_and_build_model_fills_it():
    with pytest.raises(UserError, match="needs l_max"):
        build("s4", 2, 8, C_init="C")
    with pytest.raises(UserError, match="valid: C, C_tilde"):
        build("s4", 2, 8, C_init="B")
    from ssm_cli.config import compose
    from ssm_cli.data.base import DataSpec
    from ssm_cli.model import build_model
    cfg = compose(["dataset=scifar", "preset=smoke", "model=s4", "model.n_layers=1", "model.d_model=4",
                   "model.d_state=4"])
    core = build_model(cfg.model, DataSpec(name="x", seq_len=40, d_input=3, d_output=2)).blocks[0].core
    o = core.options
    assert (o["l_max"], o["C_init"], o["dt_transform"], o["B_clip"]) == (40, "C", "softplus", 2.0)


def test_s4_reference_defaults_convolution_equals_recurrence():
    L = 30
    core = build("s4", 2, 8, seed=1, dt_min=0.01, dt_max=0.3, dt_transform="softplus", B_clip=2.0,
                 C_init="C", l_max=L).double()
    u = torch.randn(2, L, 2, dtype=torch.float64)
    s, ys = core.init_state(2), []
    for t in range(L):
        y, s = core.step(u[:, t], s, L=L)
        ys.append(y)
    torch.testing.assert_close(core(u), torch.stack(ys, 1), rtol=1e-8, atol=1e-9)
