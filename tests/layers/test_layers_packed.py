"""A pack of K models = the K models run one by one: outputs and gradients (float64)."""
import copy

import pytest
import torch
import torch.nn.functional as F

from ssm_cli.errors import UserError
from ssm_cli.layers import SequenceModel
from ssm_cli.layers.packed import PackedModel


def _members(specs, **backbone):
    models = []
    for i, core in enumerate(specs):
        torch.manual_seed(i)
        kw = dict(d_model=8, n_layers=2, d_state=4, dropout=0.0, core="s4d")
        kw.update(backbone)
        d_in = kw.pop("d_input", 3)
        models.append(SequenceModel(d_in, 5, core_options=core, **kw).double())
    return models


CORES = [dict(init="inv", disc="zoh"), dict(init="lin", disc="bilinear", real_transform="relu"),
         dict(init="real", disc="zoh", trainable_B=False)]
BACKBONES = {
    "default": {},
    "bidirectional": {"_bi": True},
    "prenorm": {"prenorm": True},
    "batchnorm": {"norm": "batch"},
    "glu": {"final_act": "glu"},
    "gelu_final": {"final_act": "gelu"},
    "channels2": {"_channels": 2},
    "last_pool": {"pool": "last"},
}


def _setup(name):
    """Three members with the CORES, the backbone of BACKBONES[name] ("_" keys are core options)."""
    spec = BACKBONES[name]
    backbone = {k: v for k, v in spec.items() if not k.startswith("_")}
    cores = [dict(c, bidirectional=spec.get("_bi", False), channels=spec.get("_channels", 1)) for c in CORES]
    return _members(cores, **backbone)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_pack_equals_members_forward_and_gradients(name):
    members = _setup(name)
    alone = copy.deepcopy(members)
    pack = PackedModel(members)
    torch.manual_seed(0)
    x = torch.randn(4, 16, 3, dtype=torch.float64)
    y = torch.randint(0, 5, (4,))
    out = pack(x)  # (K B O)
    assert out.shape == (3, 4, 5)
    sum(F.cross_entropy(out[k], y) for k in range(3)).backward()
    for k, m in enumerate(alone):
        ref = m(x)
        torch.testing.assert_close(out[k], ref, rtol=1e-9, atol=1e-10)
        F.cross_entropy(ref, y).backward()
        for (n, p), (n2, q) in zip(m.named_parameters(), members[k].named_parameters()):
            assert n == n2
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-8, atol=1e-10, msg=f"member {k} {n}")
    if name == "batchnorm":  # running statistics updated member by member
        for k, m in enumerate(alone):
            torch.testing.assert_close(members[k].blocks[0].norm.norm.running_mean, m.blocks[0].norm.norm.running_mean)


def test_pack_eval_mode_and_rate():
    members = _members([dict(c, bidirectional=True) for c in CORES])
    pack = PackedModel(members).eval()
    x = torch.randn(2, 32, 3, dtype=torch.float64)
    out = pack(x, rate=2.0)
    for k, m in enumerate(members):
        torch.testing.assert_close(out[k], m.eval()(x, rate=2.0), rtol=1e-9, atol=1e-10)


def test_pack_of_different_core_classes():
    torch.manual_seed(0)
    a = SequenceModel(3, 5, d_model=8, n_layers=1, d_state=4, dropout=0.0, core="s4d", core_options={"init": "inv"})
    b = SequenceModel(3, 5, d_model=8, n_layers=1, d_state=4, dropout=0.0, core="s4", core_options={"init": "legs"})
    a, b = a.double(), b.double()
    pack = PackedModel([a, b])
    x = torch.randn(2, 16, 3, dtype=torch.float64)
    out = pack(x)
    torch.testing.assert_close(out[0], a(x))
    torch.testing.assert_close(out[1], b(x))


def test_pack_embedding_and_two_tower():
    torch.manual_seed(0)
    kw = dict(d_model=8, n_layers=1, d_state=4, dropout=0.0, encoder="embedding", vocab_size=11)
    ms = [SequenceModel(1, 3, core_options=c, **kw).double() for c in CORES[:2]]
    x = torch.randint(0, 11, (3, 12))
    out = PackedModel(ms)(x)
    for k, m in enumerate(ms):
        torch.testing.assert_close(out[k], m(x))
    ms = [SequenceModel(1, 3, core_options=c, two_tower=True, **kw).double() for c in CORES[:2]]
    x = torch.randint(0, 11, (3, 2, 12))
    out = PackedModel(ms)(x)
    for k, m in enumerate(ms):
        torch.testing.assert_close(out[k], m(x))


def test_dropout_masks_are_independent_per_member():
    torch.manual_seed(0)
    ms = [SequenceModel(3, 5, d_model=8, n_layers=1, d_state=4, dropout=0.5) for _ in range(2)]
    ms[1].load_state_dict(ms[0].state_dict())
    out = PackedModel(ms).train()(torch.randn(4, 16, 3))
    assert not torch.allclose(out[0], out[1])  # identical weights, different masks


@pytest.mark.parametrize("change", [{"d_model": 16}, {"n_layers": 3}, {"prenorm": True}, {"dropout": 0.2}])
def test_incompatible_members_are_refused(change):
    kw = dict(d_model=8, n_layers=2, d_state=4, dropout=0.1)
    a = SequenceModel(3, 5, **kw)
    b = SequenceModel(3, 5, **{**kw, **change})
    with pytest.raises(UserError, match="cannot share a pack"):
        PackedModel([a, b])


def test_bidirectional_mismatch_is_refused():
    a = SequenceModel(3, 5, d_model=8, n_layers=1, d_state=4, core_options={"bidirectional": True})
    b = SequenceModel(3, 5, d_model=8, n_layers=1, d_state=4, core_options={"bidirectional": False})
    with pytest.raises(UserError, match="bidirectional"):
        PackedModel([a, b])


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("disc", ["zoh", "bilinear", "dss"])
@pytest.mark.parametrize("channels,n_ssm", [(1, 1), (2, None), (1, 4)])
def test_packed_conv_kernel_equals_each_cores_kernel(bidirectional, disc, channels, n_ssm):
    from ssm_cli.layers import build
    from ssm_cli.layers.cores.s4d import DiagonalSSM

    common = dict(disc=disc, bidirectional=bidirectional, channels=channels, n_ssm=n_ssm)
    cores = [build("s4d", 8, 6, init=init, seed=i, **common).double()
             for i, init in enumerate(["inv", "lin", "legs", "real", "rand"])]
    assert len({c.kernel_batch_key() for c in cores}) == 1
    for rate in (1.0, 2.0):
        ref = torch.cat([c.conv_kernel(16, rate=rate) for c in cores], dim=1)
        torch.testing.assert_close(DiagonalSSM.batch_conv_kernel(cores, 16, rate), ref, rtol=1e-12, atol=1e-12)


def test_pack_kernels_of_mixed_kinds_keep_member_order():
    from ssm_cli.layers import build
    from ssm_cli.layers.base import conv_kernels

    cores = [build("s4d", 8, 4, init="inv", seed=0), build("s4d", 8, 4, init="lin", seed=1),
             build("s4d", 8, 4, disc="bilinear", seed=2), build("s4", 8, 4, seed=3),
             build("s4d", 8, 4, init="real", seed=4), build("s4d", 8, 4, init="legs", seed=5)]
    cores = [c.double() for c in cores]
    ref = torch.cat([c.conv_kernel(16) for c in cores], dim=1)
    torch.testing.assert_close(conv_kernels(cores, 16, 1.0), ref, rtol=1e-12, atol=1e-12)
    # gradients reach every core's own parameters
    conv_kernels(cores, 16, 1.0).square().sum().backward()
    assert all(c.log_dt.grad is not None and torch.isfinite(c.log_dt.grad).all() for c in cores)


@pytest.mark.parametrize("K", [1, 3, 10])
def test_packed_linear_is_each_members_linear(K):
    from ssm_cli.layers.blockdiag import packed_linear

    torch.manual_seed(0)
    z = torch.randn(2, 5, K * 6, dtype=torch.float64, requires_grad=True)
    W = torch.randn(K, 4, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(K, 4, dtype=torch.float64, requires_grad=True)
    out = packed_linear(z, W, b)  # K=10: the batched-matmul path
    ref = torch.cat([F.linear(z[..., 6 * k:6 * (k + 1)], W[k], b[k]) for k in range(K)], dim=-1)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    for a, c in zip(torch.autograd.grad(out, (z, W, b), g), torch.autograd.grad(ref, (z, W, b), g)):
        torch.testing.assert_close(a, c)


# ---- a member that goes non-finite (a diverged run) leaves the others untouched ----------------------
# IEEE: NaN * 0 = Inf * 0 = NaN, so the zero blocks of the block-diagonal GEMM (K <= 8) would carry one
# member's NaN/Inf into every member's outputs (forward) and input gradients (backward).

@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("K", [3, 10])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_packed_linear_keeps_non_finite_values_in_their_member(K, bad, compiled):
    from ssm_cli.layers.blockdiag import packed_linear

    torch.manual_seed(0)
    I, O = 6, 4
    z = torch.randn(2, 5, K * I, dtype=torch.float64)
    z[0, 1, I + 2] = bad  # member 1, one row: non-finite activations
    z[1, 3, I:2 * I] = bad  # and a whole row
    z.requires_grad_(True)
    W = torch.randn(K, O, I, dtype=torch.float64, requires_grad=True)
    b = torch.randn(K, O, dtype=torch.float64, requires_grad=True)
    f = torch.compile(packed_linear, backend="aot_eager", dynamic=False, fullgraph=True) if compiled else packed_linear
    out = f(z, W, b)  # K=10: the batched-matmul path
    ref = torch.cat([F.linear(z[..., I * k:I * (k + 1)], W[k], b[k]) for k in range(K)], dim=-1)
    g = torch.randn_like(ref)
    g[0, 2, O + 1] = bad  # member 1's output gradient: non-finite in other rows
    g[1, 0, O:2 * O] = bad
    grads, refs = torch.autograd.grad(out, (z, W, b), g), torch.autograd.grad(ref, (z, W, b), g)
    for k in range(K):
        zs, os_ = slice(I * k, I * (k + 1)), slice(O * k, O * (k + 1))
        if k != 1:  # the others: exactly their own linear maps
            torch.testing.assert_close(out[..., os_], ref[..., os_])
            torch.testing.assert_close(grads[0][..., zs], refs[0][..., zs])
        else:  # member 1: not finite exactly where its own linear map is not
            assert torch.equal(torch.isfinite(out[..., os_]), torch.isfinite(ref[..., os_]))
            assert not torch.isfinite(out[..., os_]).all()
            assert torch.equal(torch.isfinite(grads[0][..., zs]), torch.isfinite(refs[0][..., zs]))
            assert not torch.isfinite(grads[0][..., zs]).all()
    others = [k for k in range(K) if k != 1]
    for a, c in zip(grads[1:], refs[1:]):  # dW, db: the others' own; member 1's not finite
        torch.testing.assert_close(a[others], c[others])
        assert not torch.isfinite(a[1]).any() and not torch.isfinite(c[1]).all()


@pytest.mark.parametrize("guarded", [False, True])
def test_block_diagonal_linear_is_the_plain_gemm_for_finite_values(guarded, monkeypatch):
    """The GEMM of finite values with the guards against non-finite ones (always on a GPU and in
    compiled code), or without them (eager CPU steps whose values are all finite), is the plain
    GEMM's to float64 rounding. Not bitwise: the weight gradient is z^T g here and g^T z in
    autograd, and which kernel a BLAS picks for each (so its summation order) depends on the CPU."""
    from ssm_cli.layers import blockdiag

    if guarded:
        monkeypatch.setattr(blockdiag, "_finite_on_host", lambda t: False)
    torch.manual_seed(0)
    z = torch.randn(2, 5, 3 * 6, dtype=torch.float64, requires_grad=True)
    W = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    out = blockdiag.packed_linear(z, W, b)
    ref = F.linear(z, torch.block_diag(*W.unbind(0)), b.reshape(-1))  # the former implementation
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-13)
    g = torch.randn_like(ref)
    for a, c in zip(torch.autograd.grad(out, (z, W, b), g), torch.autograd.grad(ref, (z, W, b), g)):
        torch.testing.assert_close(a, c, rtol=1e-13, atol=1e-13)


def _corrupt(member, case):
    with torch.no_grad():
        if case == "nan":  # every parameter
            for p in member.parameters():
                p.fill_(float("nan"))
        elif case == "nan_kernel":  # the SSM cores only: the residual stream stays finite up to the linear
            for blk in member.blocks:
                for p in blk.core.parameters():
                    p.fill_(float("nan"))
        elif case == "nan_last_kernel":  # the last block's core only: NaN gradients reach finite activations
            for p in member.blocks[-1].core.parameters():
                p.fill_(float("nan"))
        elif case == "inf":  # Inf activations from the encoder on
            member.encoder.bias.fill_(float("inf"))


@pytest.mark.parametrize("name", ["default", "glu", "channels2", "prenorm", "batchnorm"])
@pytest.mark.parametrize("case", ["nan", "nan_kernel", "nan_last_kernel", "inf"])
def test_a_non_finite_member_leaves_the_others_alone(name, case):
    """Member 1 of 3 diverged: members 0 and 2 compute what they compute beside a finite member 1
    (to float64 rounding: the zero blocks add exactly nothing, but the corrupt pack's GEMMs run on
    the guarded path, which a BLAS may sum in another order) and what they compute alone; member 1
    is not finite."""
    members = _setup(name)
    clean = PackedModel(copy.deepcopy(members))
    alone = copy.deepcopy(members)
    _corrupt(members[1], case)
    pack = PackedModel(members)
    torch.manual_seed(0)
    x = torch.randn(4, 16, 3, dtype=torch.float64)
    y = torch.randint(0, 5, (4,))
    outs = []
    for p in (pack, clean):
        out = p(x)
        losses = torch.stack([F.cross_entropy(out[k], y) for k in range(3)])
        losses.sum().backward()
        outs.append((out.detach(), losses.detach()))
    (out, losses), (ref, _) = outs
    assert not torch.isfinite(out[1]).any() and not torch.isfinite(losses[1])  # its divergence shows
    assert torch.isfinite(losses[[0, 2]]).all()
    for k in (0, 2):
        torch.testing.assert_close(out[k], ref[k], rtol=1e-12, atol=1e-13, msg=f"member {k}")
        for (n, p), q in zip(pack.members[k].named_parameters(), clean.members[k].parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-13, msg=f"member {k} {n}")
        a = alone[k]
        torch.testing.assert_close(out[k], a(x), rtol=1e-9, atol=1e-10)
        F.cross_entropy(a(x), y).backward()
        for (n, p), q in zip(pack.members[k].named_parameters(), a.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-8, atol=1e-10, msg=f"member {k} {n}")
