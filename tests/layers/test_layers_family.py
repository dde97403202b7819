"""The 2022 family cores (mega_ema, dlr, sgconv, liquid_s4, gss): kernel = brute-force formula,
convolution = recurrence, the block structure GSS brings, bad input."""
import math

import numpy as np
import pytest
import torch

from ssm_cli.errors import UserError
from ssm_cli.layers import SequenceModel, build
from ssm_cli.layers.cores.liquid_s4 import input_products
from ssm_cli.layers.fftconv import two_sided

torch.set_default_dtype(torch.float32)


def run_recurrent(core, u, **kw):
    """y (B, L, C*H) by the core's step, one position at a time."""
    state = core.init_state(u.shape[0])
    ys = []
    for t in range(u.shape[1]):
        y, state = core.step(u[:, t], state, **kw)
        ys.append(y)
    return torch.stack(ys, 1)


def direct_conv(u, k, D, k_back=None):
    """y[b, t, c*H + h] = sum_{s<=t} k[c,h,t-s] u[b,s,h] (+ sum_{s>t} k_back[c,h,s-t-1] u[b,s,h]) + D u."""
    B, L, H = u.shape
    C = k.shape[0]
    y = torch.zeros(B, L, C, H, dtype=u.dtype)
    for t in range(L):
        for s in range(L):
            if s <= t:
                y[:, t] += k[:, :, t - s] * u[:, s, None]
            elif k_back is not None:
                y[:, t] += k_back[:, :, s - t - 1] * u[:, s, None]
    return (y + D * u[:, :, None]).reshape(B, L, C * H)


# ---- Mega's damped EMA -----------------------------------------------------------------------
def test_mega_ema_kernel_is_the_damped_ema_formula():
    core = build("mega_ema", 3, 8, n_dim=4, channels=2, seed=0).double()
    L = 9
    a, f = torch.sigmoid(core.alpha[0]), torch.sigmoid(core.delta[0])  # (H n)
    want = torch.zeros(2, 3, L, dtype=torch.float64)
    for c in range(2):
        for h in range(3):
            for n in range(4):
                for ell in range(L):
                    want[c, h, ell] += (core.gamma[0, c, h, n] / 2.0 * a[h, n] * core.beta[0, h, n]
                                        * (1 - a[h, n] * f[h, n]) ** ell)
    torch.testing.assert_close(core.kernel(L), want, rtol=1e-12, atol=1e-12)


def test_mega_ema_convolution_equals_recurrence_and_bidirectional_is_two_sided():
    core = build("mega_ema", 3, 8, n_dim=4, channels=2, seed=1).double()
    u = torch.randn(2, 13, 3, dtype=torch.float64)
    torch.testing.assert_close(core(u), run_recurrent(core, u), rtol=1e-9, atol=1e-10)
    bi = build("mega_ema", 3, 8, n_dim=4, bidirectional=True, seed=1).double()
    k = bi.kernel(13)
    torch.testing.assert_close(bi(u), direct_conv(u, k[0], bi.D, k[1]), rtol=1e-9, atol=1e-10)
    with pytest.raises(UserError, match="recurrent"):
        bi.init_state(2)


def test_mega_ema_init_follows_the_authors():
    core = build("mega_ema", 64, 8, n_dim=16, seed=0)
    sign = torch.tensor([1.0, -1.0] * 8)
    assert (core.beta[0] - sign).abs().max() < 0.15  # N(0, 0.02) around (1, -1, ...)
    assert 0.15 < core.alpha.std() < 0.25 and 0.15 < core.delta.std() < 0.25


# ---- DLR ------------------------------------------------------------------------------------
def test_dlr_kernel_is_re_W_lambda_power_and_equals_recurrence():
    core = build("dlr", 3, 5, channels=2, seed=0).double()
    L = 11
    lam = torch.exp(torch.complex(-core.s ** 2, core.theta))  # (N)
    W = torch.view_as_complex(core.W.contiguous())  # (C H N)
    want = torch.stack([(W * lam ** ell).sum(-1).real for ell in range(L)], -1)
    torch.testing.assert_close(core.kernel(L), want, rtol=1e-10, atol=1e-12)
    u = torch.randn(2, L, 3, dtype=torch.float64)
    torch.testing.assert_close(core(u), run_recurrent(core, u), rtol=1e-9, atol=1e-10)


def test_dlr_omega_init():
    core = build("dlr", 2, 8, seed=0, dt_min=1e-4, dt_max=1e-1)
    torch.testing.assert_close(core.theta, 2 * math.pi * torch.arange(8.0) / 8)
    re = -(core.s ** 2)
    assert (re <= -0.5e-4 * 0.999).all() and (re >= -0.05 * 1.001).all()


# ---- SGConv ---------------------------------------------------------------------------------
def linear_upsample(x: np.ndarray, s: int) -> np.ndarray:
    """Linear interpolation by an integer factor s, half-pixel centres, edges clamped."""
    n = len(x)
    out = np.empty(n * s)
    for j in range(n * s):
        pos = min(max((j + 0.5) / s - 0.5, 0.0), n - 1)
        i0 = int(math.floor(pos))
        i1 = min(i0 + 1, n - 1)
        out[j] = x[i0] + (pos - i0) * (x[i1] - x[i0])
    return out


def test_sgconv_kernel_is_the_multiscale_formula():
    core = build("sgconv", 2, 8, kernel_dim=4, l_max=30, decay_min=1.5, decay_max=2.5, seed=0).double()
    S = core.n_scales
    assert S == 1 + math.ceil(math.log2(30 / 4)) == 4
    full = []
    for h in range(2):
        m = [1.5, 2.5][h]
        parts = [linear_upsample(getattr(core.sub_kernels, f"k{i}")[0, h].detach().numpy(), 2 ** max(0, i - 1))
                 * m ** (S - 1 - i) for i in range(S)]
        full.append(np.concatenate(parts))
    full = np.stack(full)  # (H 4*2^3)
    assert full.shape[-1] == 32
    norm = core.norm[0].numpy()  # (H 1): the initial kernel's norm, fixed at construction (float32)
    np.testing.assert_allclose(norm, np.linalg.norm(full, axis=-1, keepdims=True), rtol=1e-6)
    want = full / norm
    torch.testing.assert_close(core.kernel(32)[0], torch.from_numpy(want), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(core.kernel(20)[0], torch.from_numpy(want[:, :20]), rtol=1e-10, atol=1e-12)
    long = core.kernel(40)[0]
    assert (long[:, 32:] == 0).all()
    u = torch.randn(1, 12, 2, dtype=torch.float64)
    torch.testing.assert_close(core(u), direct_conv(u, core.kernel(12), core.D), rtol=1e-9, atol=1e-10)


def test_sgconv_needs_a_length():
    with pytest.raises(UserError, match="l_max"):
        build("sgconv", 2, 8)


# ---- Liquid-S4 --------------------------------------------------------------------------------
def test_liquid_s4_order_1_is_s4():
    s4 = build("s4", 3, 8, seed=0).double()
    liquid = build("liquid_s4", 3, 8, seed=0, liquid_order=1).double()
    u = torch.randn(2, 10, 3, dtype=torch.float64)
    torch.testing.assert_close(liquid(u), s4(u), rtol=1e-12, atol=1e-12)


def test_liquid_s4_terms_are_the_pb_formula_and_equal_the_recurrence():
    core = build("liquid_s4", 3, 8, seed=0, liquid_order=3, channels=2).double()
    L = 10
    u = torch.randn(2, L, 3, dtype=torch.float64)
    Abar, Bbar, Ct = core._dense_system(None)  # (H N N), (H N), (C H N): C~
    y_lin = direct_conv(u, core.kernel(L), core.D)
    want = y_lin.reshape(2, L, 2, 3).clone()
    for p in (2, 3):
        c = (Ct * Bbar ** p).sum(-1).real  # (C H)
        for t in range(L):
            prod = torch.ones(2, 3, dtype=torch.float64)
            for j in range(p):
                prod = prod * (u[:, t - j] if t - j >= 0 else 0)
            want[:, t] += c * prod[:, None]
    want = want.reshape(2, L, 6)
    torch.testing.assert_close(core(u), want, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(run_recurrent(core, u, L=L), want, rtol=1e-7, atol=1e-8)


def test_input_products_backward_are_strictly_future():
    u = torch.arange(1.0, 6.0).view(1, 5, 1)
    assert input_products(u, 2).flatten().tolist() == [0, 2, 6, 12, 20]
    assert input_products(u, 2, future=True).flatten().tolist() == [6, 12, 20, 0, 0]


# ---- GSS ------------------------------------------------------------------------------------
def test_gss_is_the_gated_unit_with_a_dss_exp_kernel():
    core = build("gss", 8, 6, reduction=4, expand=2, dt=0.5, seed=0).double()
    L = 9
    lam = torch.complex(-torch.exp(core.log_neg_re), core.im)  # (N)
    W = torch.view_as_complex(core.W.contiguous())[0]  # (S N)
    k = torch.stack([(W * (torch.exp(0.5 * lam) - 1) / lam * torch.exp(0.5 * lam * ell)).sum(-1).real
                     for ell in range(L)], -1)  # (S L)
    torch.testing.assert_close(core.kernel(L)[0], k, rtol=1e-10, atol=1e-12)
    x = torch.randn(2, L, 8, dtype=torch.float64)
    gelu = torch.nn.functional.gelu
    v = gelu(core.in_v(x))
    z = gelu(core.in_u(x))
    y = direct_conv(z, k[None], core.D_ssm)
    want = core.out_o(core.out_y(y) * v)
    torch.testing.assert_close(core(x), want, rtol=1e-9, atol=1e-10)
    assert core.log_neg_re.requires_grad and core.dt == 0.5  # Delta is a constant, not a parameter
    assert "dt" not in dict(core.named_parameters())


def test_gss_bidirectional_and_block_is_its_mixer():
    core = build("gss", 8, 4, bidirectional=True, seed=0).double()
    k = core.kernel(7)  # (2 1 S L)
    assert k.shape == (2, 1, 2, 7)
    x = torch.randn(1, 7, 8, dtype=torch.float64)
    z = torch.nn.functional.gelu(core.in_u(x))
    y = direct_conv(z, k[0], core.D_ssm, k[1])
    want = core.out_o(core.out_y(y) * torch.nn.functional.gelu(core.in_v(x)))
    torch.testing.assert_close(core(x), want, rtol=1e-9, atol=1e-10)
    model = SequenceModel(1, 3, d_model=8, n_layers=1, core="gss", d_state=4, dropout=0.0)
    block = model.blocks[0]
    assert block.mixer and block.out is None and isinstance(block.act, torch.nn.Identity)
    assert model(torch.randn(2, 7, 1)).shape == (2, 3)


def test_gss_needs_divisible_width():
    with pytest.raises(UserError, match="reduction"):
        build("gss", 6, 4, reduction=4)


# ---- shared -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kw", [("mega_ema", {}), ("dlr", {}), ("sgconv", {"l_max": 8})])
def test_discrete_time_cores_refuse_a_rate(name, kw):
    core = build(name, 2, 4, **kw)
    with pytest.raises(UserError, match="discrete-time"):
        core(torch.randn(1, 8, 2), rate=2.0)


@pytest.mark.parametrize("name,kw", [("mega_ema", {}), ("dlr", {}), ("sgconv", {"l_max": 16}),
                                     ("liquid_s4", {"liquid_order": 2}), ("gss", {})])
def test_family_cores_train_one_step(name, kw):
    """Every parameter gets a finite gradient; tagged parameters carry their lr."""
    model = SequenceModel(2, 3, d_model=8, n_layers=2, core=name, d_state=4, core_options=kw)
    x = torch.randn(4, 16, 2)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    assert any(hasattr(p, "_optim") for p in model.parameters())


def test_mixer_cores_pack_only_with_mixer_cores():
    from omegaconf import OmegaConf

    from ssm_cli.train.pack import core_is_mixer, pack_key

    assert core_is_mixer("gss") and not core_is_mixer("s4d") and not core_is_mixer("liquid_s4")

    def cfg(core, h):
        return OmegaConf.create({"model": {"core": core, "d_model": 8}, "run": {"seed": 0, "config_hash": h}})

    assert pack_key(cfg("s4d", "a")) == pack_key(cfg("liquid_s4", "b")) == pack_key(cfg("mega_ema", "c"))
    assert pack_key(cfg("gss", "a")) == pack_key(cfg("gss", "b")) != pack_key(cfg("s4d", "a"))


def test_packs_of_cores_with_their_own_forward_equal_their_members():
    """Liquid-S4 beside S4D, and two GSS mixers, run through their own forward in a pack."""
    from ssm_cli.layers.packed import PackedModel

    kw = dict(d_model=4, n_layers=2, d_state=4, dropout=0.0)
    x = torch.randn(3, 12, 2, dtype=torch.float64)
    for cores in ((("s4d", {}), ("liquid_s4", {"l_max": 12})), (("gss", {}), ("gss", {}))):
        members = [SequenceModel(2, 3, core=c, core_options=o, **kw).double() for c, o in cores]
        want = torch.stack([m(x) for m in members])  # (K B d_output)
        torch.testing.assert_close(PackedModel(members)(x), want, rtol=1e-9, atol=1e-10)


def test_pack_of_kernel_cores_equals_its_members():
    """mega_ema, sgconv and dlr pack with s4d (one FFT for the kernels): the pack's outputs are the members'."""
    from ssm_cli.layers.packed import PackedModel

    kw = dict(d_model=4, n_layers=2, d_state=4, dropout=0.0)
    members = [SequenceModel(2, 3, core=c, core_options=dict(o, bidirectional=True), **kw).double()
               for c, o in (("s4d", {}), ("mega_ema", {}), ("sgconv", {"l_max": 12}), ("dlr", {}))]
    x = torch.randn(3, 12, 2, dtype=torch.float64)
    want = torch.stack([m(x) for m in members])  # (K B d_output)
    torch.testing.assert_close(PackedModel(members)(x), want, rtol=1e-9, atol=1e-10)
