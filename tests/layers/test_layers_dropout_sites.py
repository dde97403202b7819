"""Dropout sites of a block: the reference's three (core output, after the activation, residual
branch) or our single one; the same in a pack."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ssm_cli.errors import UserError
from ssm_cli.layers import SequenceModel
from ssm_cli.layers.backbone import TiedDropout
from ssm_cli.layers.packed import PackedModel


def _model(sites: str, p: float = 0.1, tie: bool = True, seed: int = 0, **kw) -> SequenceModel:
    torch.manual_seed(seed)
    return SequenceModel(3, 4, d_model=8, n_layers=2, d_state=4, dropout=p, tie_dropout=tie,
                         dropout_sites=sites, core_options={"bidirectional": True}, **kw)


def _calls(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str, tuple]]:
    """(module name, kind, input shape) of every dropout applied in one training forward, in order."""
    calls = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: calls.append(
        (n, "tied" if isinstance(mod, TiedDropout) else "elementwise", tuple(i[0].shape))))
        for n, m in model.named_modules() if isinstance(m, (TiedDropout, nn.Dropout))]
    model.train()
    model(x)
    for h in hooks:
        h.remove()
    return calls


def test_reference_sites_count_kind_and_order():
    x = torch.randn(2, 10, 3)
    calls = _calls(_model("reference"), x)
    assert calls == [(f"blocks.{i}.{site}", kind, (2, 10, 8))
                     for i in range(2)
                     for site, kind in (("core_drop", "elementwise"), ("drop", "tied"), ("res_drop", "tied"))]
    # untied dropout everywhere but the core's, which is elementwise either way
    kinds = [k for _, k, _ in _calls(_model("reference", tie=False), x)]
    assert kinds == ["elementwise"] * 6


def test_single_site():
    calls = _calls(_model("single"), torch.randn(2, 10, 3))
    assert calls == [(f"blocks.{i}.drop", "tied", (2, 10, 8)) for i in range(2)]
    b = _model("single").blocks[0]
    assert isinstance(b.core_drop, nn.Identity) and isinstance(b.res_drop, nn.Identity)


def test_no_extra_sites_without_dropout():
    b = _model("reference", p=0.0).blocks[0]
    assert isinstance(b.core_drop, nn.Identity) and isinstance(b.res_drop, nn.Identity)


def test_reference_sites_sit_where_the_reference_drops():
    """Each dropout's input is exactly what the reference drops there: the core's output (before
    the activation), the activation's output (before the output linear), the output linear's
    result (the residual branch, before x + y); and the block's output is norm(x + that)."""
    m = _model("reference")
    b = m.blocks[0]
    seen = {}
    for name in ("core_drop", "act", "drop", "res_drop"):
        getattr(b, name).register_forward_hook(lambda mod, i, o, n=name: seen.__setitem__(n, (i, o)))
    x = torch.randn(2, 10, 8)
    b.train()
    y = b(x)
    torch.testing.assert_close(seen["core_drop"][0][0], b.core(x))
    torch.testing.assert_close(seen["act"][0][0], seen["core_drop"][1])
    torch.testing.assert_close(seen["drop"][0][0], seen["act"][1])
    torch.testing.assert_close(seen["res_drop"][0][0], b.out(seen["drop"][1]))
    torch.testing.assert_close(y, F.layer_norm(x + seen["res_drop"][1], (8,), b.norm.norm.weight, b.norm.norm.bias))
    assert not torch.equal(seen["core_drop"][1], seen["core_drop"][0][0])  # it did drop


def test_sites_change_training_outputs_only():
    """Both variants have the same parameters and the same eval-mode function."""
    ref, single = _model("reference", seed=3), _model("single", seed=3)
    assert [n for n, _ in ref.named_parameters()] == [n for n, _ in single.named_parameters()]
    single.load_state_dict(ref.state_dict())
    x = torch.randn(2, 10, 3)
    torch.testing.assert_close(ref.eval()(x), single.eval()(x))


def test_invalid_sites():
    with pytest.raises(UserError, match="dropout_sites"):
        _model("double")


def test_pack_has_the_members_sites_and_keeps_them_apart():
    """The packed tail drops at the members' sites, with the same kinds; with dropout on, each
    member's gradient still comes from its own loss only."""
    members = [_model("reference", seed=s) for s in (0, 1)]
    pack = PackedModel(members)
    tail = members[0].blocks[0]  # the pack's tails are member 0's blocks, over all K members
    assert isinstance(tail.core_drop, nn.Dropout) and not isinstance(tail.core_drop, TiedDropout)
    assert isinstance(tail.drop, TiedDropout) and isinstance(tail.res_drop, TiedDropout)
    single = PackedModel([_model("single", seed=s) for s in (0, 1)]).members[0].blocks[0]
    assert isinstance(single.core_drop, nn.Identity) and isinstance(single.res_drop, nn.Identity)
    with pytest.raises(UserError, match="dropout_sites"):
        PackedModel([_model("reference"), _model("single")])
    # sites called per block: 3 over all K*H features
    calls = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: calls.append((n, tuple(i[0].shape))))
             for blk in members[0].blocks for n, m in blk.named_children() if isinstance(m, (TiedDropout, nn.Dropout))]
    pack.train()
    x = torch.randn(2, 10, 3)
    out = pack(x)  # (K B O)
    for h in hooks:
        h.remove()
    assert calls == [("core_drop", (2, 10, 16)), ("drop", (2, 10, 16)), ("res_drop", (2, 10, 16))] * 2
    F.cross_entropy(out[0], torch.tensor([0, 1])).backward()
    assert all(p.grad is None or not p.grad.any() for p in members[1].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in members[0].parameters())


def test_pack_matches_members_with_the_same_masks():
    """With the masks drawn in the same order from one generator, a pack of one = its member (dropout on)."""
    class Replay(nn.Module):
        def __init__(self, p, tied, gen):
            super().__init__()
            self.p, self.tied, self.gen = p, tied, gen

        def forward(self, x):
            shape = (x.shape[0], 1, x.shape[2]) if self.tied else x.shape
            return x * (torch.rand(shape, generator=self.gen, dtype=x.dtype) >= self.p) / (1 - self.p)

    def replay(mod, gen):
        for name in ("core_drop", "drop", "res_drop"):
            old = getattr(mod, name)
            setattr(mod, name, Replay(old.p, isinstance(old, TiedDropout), gen))

    m = _model("reference", p=0.3).double()
    gm, gp = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for b in m.blocks:
        replay(b, gm)
    x = torch.randn(2, 10, 3, dtype=torch.float64)
    y = m.train()(x)
    twin = _model("reference", p=0.3).double()
    twin.load_state_dict(m.state_dict())
    pack = PackedModel([twin])
    for b in twin.blocks:
        replay(b, gp)
    torch.testing.assert_close(pack.train()(x)[0], y)
