"""``ssm plot transfer``: a PNG, and curves equal to |C (i omega - A)^-1 B| of each init's dense system."""
import numpy as np

from ssm_cli.layers.hippo import hippo, normal_part
from ssm_cli.layers.init import diagonal_init
from ssm_cli.layers.ptd import ptd_init
from ssm_cli.results.transfer import plot_transfer

FAST = dict(steps=30)


def dense(A, B, C, omegas):
    return np.abs([C @ np.linalg.solve(1j * w * np.eye(len(B)) - A, B) for w in omegas])


def test_transfer_curves_match_dense_systems_and_png(tmp_path, monkeypatch):
    monkeypatch.setenv("SSM_PTD_CACHE", str(tmp_path / "ptd"))
    N, out = 8, tmp_path / "t.png"
    curves = plot_transfer(N, out, points=7, omega_min=0.5, omega_max=500.0, ptd_options=FAST)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    w = curves["omegas"]
    A, B = hippo("legs", N)
    C = np.ones(N)
    np.testing.assert_allclose(curves["exact"], dense(A, B, C, w), rtol=1e-10)
    _, Bn = hippo("legs", N)
    np.testing.assert_allclose(curves["legs"], dense(normal_part("legs", N), Bn, C, w), rtol=1e-8)
    sol = ptd_init(N, **FAST)
    A_ptd = sol["V"] @ np.diag(sol["Lambda"]) @ np.linalg.inv(sol["V"])
    np.testing.assert_allclose(curves["ptd"], dense(A_ptd, B, C, w), rtol=1e-8)
    lam = diagonal_init("inv", N)[0][0]
    full = np.concatenate([lam, lam.conj()])
    np.testing.assert_allclose(curves["inv"], dense(np.diag(full), np.ones(N), np.ones(N), w), rtol=1e-10)


def test_plot_transfer_cli(ssm, tmp_path):
    p = ssm("plot", "transfer", "--n", "8", "--out", str(tmp_path / "x.png"), env={"SSM_PTD_CACHE": str(tmp_path / "c")})
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG" and "x.png" in p.stdout
