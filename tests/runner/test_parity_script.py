"""benchmarks/parity.py's own logic on a tiny model against itself (the reference is not in the repository)."""
import copy
import importlib.util
import os
import sys

import torch

from ssm_cli.layers import SequenceModel

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "parity.py")
_spec = importlib.util.spec_from_file_location("parity_script", _PATH)
parity = importlib.util.module_from_spec(_spec)
sys.modules["parity_script"] = parity  # dataclasses look their module up
_spec.loader.exec_module(parity)


def _model(sites="reference", seed=0):
    torch.manual_seed(seed)
    return SequenceModel(3, 4, d_model=8, n_layers=2, d_state=4, dropout=0.2, dropout_sites=sites,
                         core_options={"bidirectional": True})


def _identity_maps(model, **transforms):
    return [parity.ParamMap(n, n, transforms.get(n, parity._identity)) for n, _ in model.named_parameters()]


def _kernels(m, L):
    return parity.our_kernels(m, L)


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 12, 3, generator=g), torch.randint(0, 4, (2,), generator=g)


def test_network_against_itself_agrees():
    ours = _model(seed=0)
    other = _model(seed=1)  # different weights: the copy must make them equal
    x, y = _data()
    res = parity.compare_networks(ours, other, _identity_maps(ours), x, y, 1e-6, (_kernels, _kernels))
    assert res["ok"]
    assert len(res["params"]) == len(list(ours.parameters())) and all(r["agree"] for r in res["params"])
    assert [s["ours"]["module"] for s in res["dropout_sites"]] == [
        f"blocks.{i}.{n}" for i in range(2) for n in ("core_drop", "drop", "res_drop")]
    assert res["dropout_replay"]["forward_rel_err"] == 0.0


def test_conjugated_copy_agrees():
    """A conjugated B and C (the reference's layout) through the map: the kernels are equal."""
    ours = _model(seed=0)
    other = _model(seed=1)
    # A = -f(re) + i A_imag (imag transform 'none'): A_imag negated conjugates A
    maps = _identity_maps(ours)
    for m in maps:
        if m.ours.endswith((".B", ".C")):
            m.to_ref = parity._conj_pairs
        if m.ours.endswith(".A_imag"):
            m.to_ref = torch.neg
    x, y = _data()
    res = parity.compare_networks(ours, other, maps, x, y, 1e-5, (_kernels, _kernels))
    assert res["ok"], [r for r in res["params"] if not r["agree"]]


def test_wrong_map_and_other_sites_are_found():
    ours = _model()
    x, y = _data()
    maps = _identity_maps(ours)
    for m in maps:
        if m.ours == "blocks.1.core.D":
            m.to_ref = torch.neg  # a wrong layout for one parameter
    res = parity.compare_networks(ours, _model(seed=2), maps, x, y, 1e-6, (_kernels, _kernels))
    assert not res["ok"] and not res["forward"]["agree"]
    assert not next(r for r in res["params"] if r["ours"] == "blocks.1.core.D")["agree"]
    # same weights and function, dropout at one site instead of three: only the dropout rows differ
    res = parity.compare_networks(ours, _model("single"), _identity_maps(ours), x, y, 1e-6, (_kernels, _kernels))
    assert not res["ok"] and res["forward"]["agree"] and all(r["agree"] for r in res["params"])
    assert [r["agree"] for r in res["dropout_sites"]] == [False] * 6
    assert not res["dropout_replay"]["agree"]


def test_replay_draws_layout_independent_masks():
    """A channels-first tensor gets the mask a (batch, length, features) one gets, transposed."""
    x = torch.randn(2, 12, 5)
    for tied in (True, False):
        a = parity.Replay(0.5, tied, 12, torch.Generator().manual_seed(1))(x)
        b = parity.Replay(0.5, tied, 12, torch.Generator().manual_seed(1))(x.transpose(1, 2).contiguous())
        torch.testing.assert_close(b.transpose(1, 2), a)


def test_schedule_and_reference_groups():
    f = parity.warmup_cosine(10, 110)
    assert f(0) == 0.0 and f(5) == 0.5 and f(10) == 1.0 and abs(f(60) - 0.5) < 1e-12 and f(110) == 0.0
    m = _model()
    hp = parity.reference_hparams(m, 0.01, 0.05)
    assert hp["blocks.0.out.bias"] == (0.01, 0.0) and hp["blocks.0.norm.norm.weight"] == (0.01, 0.0)
    assert hp["blocks.0.out.weight"] == (0.01, 0.05) and hp["blocks.0.core.A_real"] == (0.001, 0.0)
    opt = parity.reference_optimizer(m, 0.01, 0.05, (0.9, 0.999))
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(m.parameters()))
    # our groups (the default convention) give every parameter the reference's (lr, wd)
    from ssm_cli.layers import param_groups
    ours = {n: (g["lr"], g["weight_decay"]) for g in param_groups(m, 0.01, 0.05) for n in g["param_names"]}
    assert ours == hp


# ---- S4 (DPLR): the same logic with the low-rank factor P and C~ --------------------------------------
def _s4_model(seed=0, sites="reference"):
    torch.manual_seed(seed)
    return SequenceModel(3, 4, d_model=8, n_layers=2, d_state=4, dropout=0.2, dropout_sites=sites, core="s4",
                         core_options={"bidirectional": True, "dt_transform": "softplus", "B_clip": 2.0,
                                       "C_init": "C", "l_max": 12, "seed": seed})


def _s4_conj_maps(model):
    """The reference's layout: A conjugated (A_imag negated), so B, C and P are conjugated too."""
    maps = _identity_maps(model)
    for m in maps:
        if m.ours.endswith((".B", ".C", ".P")):
            m.to_ref = parity._conj_pairs
        if m.ours.endswith(".A_imag"):
            m.to_ref = torch.neg
    return maps


def test_s4_network_against_itself_agrees():
    ours, other = _s4_model(0), _s4_model(1)
    x, y = _data()
    res = parity.compare_networks(ours, other, _identity_maps(ours), x, y, 1e-6, (_kernels, _kernels))
    assert res["ok"] and any(r["ours"].endswith("core.P") for r in res["params"])
    assert len(res["dropout_sites"]) == 6 and res["dropout_replay"]["forward_rel_err"] == 0.0


def test_s4_conjugated_copy_agrees_and_a_wrong_P_map_is_found():
    ours = _s4_model(0)
    x, y = _data()
    res = parity.compare_networks(ours, _s4_model(1), _s4_conj_maps(ours), x, y, 1e-5, (_kernels, _kernels))
    assert res["ok"], [r for r in res["params"] if not r["agree"]]
    maps = _s4_conj_maps(ours)
    for m in maps:
        if m.ours == "blocks.0.core.P":
            m.to_ref = parity._identity  # P left unconjugated while A is: a different system
    res = parity.compare_networks(ours, _s4_model(1), maps, x, y, 1e-5, (_kernels, _kernels))
    assert not res["ok"] and not res["kernels"][0]["agree"] and res["kernels"][1]["agree"]
    assert not res["forward"]["agree"]


def test_s4_reference_groups_include_P():
    m = _s4_model()
    hp = parity.reference_hparams(m, 0.01, 0.05)
    assert hp["blocks.0.core.P"] == (0.001, 0.0) and hp["blocks.0.core.C"] == (0.01, 0.05)
    from ssm_cli.layers import param_groups
    ours = {n: (g["lr"], g["weight_decay"]) for g in param_groups(m, 0.01, 0.05) for n in g["param_names"]}
    assert ours == hp
