"""Backbone (SequenceModel), parameter groups and the schedule."""
import json
import math

import pytest
import torch

from ssm_cli.errors import UserError
from ssm_cli.layers import SequenceModel, describe_groups, param_groups
from ssm_cli.train.optim import cosine_with_warmup
from ssm_cli.layers.backbone import Norm, TiedDropout


@pytest.mark.parametrize("norm,prenorm,final_act,pool,core", [
    ("layer", False, "identity", "mean", "s4d"),
    ("batch", True, "glu", "last", "dss"),
    ("layer", True, "gelu", "mean", "s4d"),
])
def test_sequence_model_shapes_and_backward(norm, prenorm, final_act, pool, core):
    m = SequenceModel(3, 5, d_model=8, n_layers=2, d_state=4, core=core, norm=norm, prenorm=prenorm,
                      final_act=final_act, pool=pool, core_options={"bidirectional": True})
    out = m(torch.randn(2, 30, 3))
    assert out.shape == (2, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_embedding_two_tower_and_rate():
    m = SequenceModel(1, 2, d_model=8, n_layers=1, d_state=4, encoder="embedding", vocab_size=11, two_tower=True)
    m.eval()
    x = torch.randint(0, 11, (3, 2, 25))
    out = m(x)
    assert out.shape == (3, 2)
    # the towers are symmetric in a, b only through a*b: swapping documents changes the logits
    assert not torch.allclose(out, m(x.flip(1)))
    # tower features equal the single-document features
    fa = m.features(x[:, 0])
    fb = m.features(x[:, 1])
    ref = m.decoder(torch.cat([fa, fb, fa * fb, fa - fb], -1))
    torch.testing.assert_close(out, ref)
    assert not torch.allclose(m(x, rate=2.0), out)
    with pytest.raises(UserError, match="vocab_size"):
        SequenceModel(1, 2, encoder="embedding")
    with pytest.raises(UserError, match="valid: mean, last"):
        SequenceModel(1, 2, pool="max")


def test_last_pool_is_causal():
    torch.manual_seed(0)
    m = SequenceModel(2, 3, d_model=8, n_layers=2, d_state=4, pool="last", norm="layer").eval()
    x = torch.randn(1, 20, 2)
    y = m.features(x)
    x2 = x.clone()
    x2[:, 5] += 1.0
    assert not torch.allclose(m.features(x2), y)  # the last step sees the past


def test_tied_dropout_mask_constant_along_length():
    torch.manual_seed(0)
    d = TiedDropout(0.5).train()
    x = torch.ones(4, 50, 16)
    y = d(x)
    assert torch.all(y == y[:, :1])  # same mask at every position
    assert 0 < (y == 0).float().mean() < 1
    assert torch.equal(d.eval()(x), x)


def test_batchnorm_normalises_over_channels():
    n = Norm("batch", 6).train()
    x = torch.randn(4, 30, 6) * torch.arange(1, 7) + 5
    y = n(x)
    torch.testing.assert_close(y.mean((0, 1)), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var((0, 1), unbiased=False), torch.ones(6), atol=1e-3, rtol=0)


def test_block_order_postnorm():
    """Post-norm block = norm(x + out(dropout(gelu(core(x)))))."""
    m = SequenceModel(2, 2, d_model=4, n_layers=1, d_state=4, dropout=0.0).eval()
    b = m.blocks[0]
    x = torch.randn(2, 10, 4)
    ref = b.norm(x + b.out(torch.nn.functional.gelu(b.core(x))))
    torch.testing.assert_close(b(x), ref)


def test_param_groups_lr_wd_and_frozen_B():
    m = SequenceModel(2, 3, d_model=8, n_layers=2, d_state=4,
                      core_options={"lr": 0.002, "trainable_B": False, "lr_C": 0.0005})
    groups = param_groups(m, lr=0.01, weight_decay=0.05, bias_norm_weight_decay=True)
    desc = describe_groups(groups)
    json.dumps(desc)
    by_lr = {d["lr"]: d for d in desc}
    assert by_lr[0.01]["weight_decay"] == 0.05
    assert by_lr[0.002]["weight_decay"] == 0.0 and by_lr[0.0005]["weight_decay"] == 0.0
    ssm = by_lr[0.002]["param_names"]
    assert sorted(n.split(".")[-1] for n in ssm) == sorted(["log_dt", "A_real", "A_imag"] * 2)
    assert all(n.endswith(".C") for n in by_lr[0.0005]["param_names"])
    names = [n for d in desc for n in d["param_names"]]
    assert not any(n.endswith(".B") for n in names)
    assert len(names) == len(set(names)) == sum(1 for p in m.parameters() if p.requires_grad)
    opt = torch.optim.AdamW(groups)
    assert len(opt.param_groups) == 3


def test_param_groups_default_C_in_global_group():
    m = SequenceModel(2, 3, d_model=8, n_layers=1, d_state=4)
    desc = describe_groups(param_groups(m, lr=0.01, weight_decay=0.01))
    assert desc[0]["lr"] == 0.01 and desc[0]["weight_decay"] == 0.01 and "blocks.0.core.C" in desc[0]["param_names"]
    ssm = next(d for d in desc if d["lr"] == 0.001)
    assert ssm["weight_decay"] == 0.0 and "blocks.0.core.B" in ssm["param_names"]


def test_param_groups_biases_and_norms_without_weight_decay():
    """The reference's convention: biases, norm parameters and embeddings get weight decay 0 (global lr);
    bias_norm_weight_decay=True puts them back into the default group."""
    m = SequenceModel(2, 3, d_model=8, n_layers=2, d_state=4)
    desc = describe_groups(param_groups(m, lr=0.01, weight_decay=0.05))
    hp = {n: (d["lr"], d["weight_decay"]) for d in desc for n in d["param_names"]}
    for name in hp:
        if name.endswith("bias") or ".norm." in name:
            assert hp[name] == (0.01, 0.0), name
    for name in ("encoder.weight", "blocks.1.out.weight", "decoder.weight", "blocks.0.core.C", "blocks.0.core.D"):
        assert hp[name] == (0.01, 0.05), name
    assert hp["blocks.0.core.log_dt"] == (0.001, 0.0)
    emb = SequenceModel(1, 3, d_model=8, n_layers=1, d_state=4, encoder="embedding", vocab_size=7)
    hp = {n: d["weight_decay"] for d in describe_groups(param_groups(emb, 0.01, 0.05)) for n in d["param_names"]}
    assert hp["encoder.weight"] == 0.0
    old = describe_groups(param_groups(m, lr=0.01, weight_decay=0.05, bias_norm_weight_decay=True))
    assert [(d["lr"], d["weight_decay"]) for d in old] == [(0.01, 0.05), (0.001, 0.0)]
    assert "blocks.0.norm.norm.weight" in old[0]["param_names"] and "decoder.bias" in old[0]["param_names"]


def test_cosine_with_warmup_values():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    s = cosine_with_warmup(opt, warmup_steps=10, total_steps=110)
    lrs = []
    for _ in range(111):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[110] == pytest.approx(0.0, abs=1e-12)
    assert "warmup_steps=10" in repr(s) and s.describe()["total_steps"] == 110
    s2 = cosine_with_warmup(torch.optim.AdamW([p], lr=1.0), 10, 110)
    s2.load_state_dict(s.state_dict())


def test_seeded_layers_differ_and_reproduce():
    kw = dict(d_model=4, n_layers=2, d_state=4, core_options={"seed": 5})
    m1, m2 = SequenceModel(2, 3, **kw), SequenceModel(2, 3, **kw)
    assert not torch.equal(m1.blocks[0].core.C, m1.blocks[1].core.C)
    for name in ("C", "D", "log_dt", "A_imag"):
        assert torch.equal(getattr(m1.blocks[1].core, name), getattr(m2.blocks[1].core, name)), name


def test_autocast_bf16_keeps_kernel_in_float32():
    core = SequenceModel(2, 3, d_model=8, n_layers=1, d_state=4).blocks[0].core
    u = torch.randn(2, 64, 8)
    ref = core(u)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = core(u.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("core", ("s4d", "s4"))
def test_model_learns_a_memory_task(core):
    """pool='last' must remember the sign of the sum of the first 8 of 64 inputs: needs the SSM's memory."""
    torch.manual_seed(0)

    def batch(n=64, L=64):
        x = torch.randn(n, L, 1)
        return x, (x[:, :8, 0].sum(1) > 0).long()

    m = SequenceModel(1, 2, d_model=16, n_layers=2, d_state=8, core=core, pool="last", dropout=0.0,
                      core_options={"dt_min": 0.01, "dt_max": 0.1})
    opt = torch.optim.AdamW(param_groups(m, lr=0.01, weight_decay=0.01))
    sched = cosine_with_warmup(opt, 10, 200)
    for _ in range(200):
        x, y = batch()
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    x, y = batch(1000)
    with torch.no_grad():
        acc = (m.eval()(x).argmax(-1) == y).float().mean().item()
    assert acc > 0.75, acc
