"""S4-PTD init: the perturbed HiPPO-LegS is diagonalised exactly and well-conditioned."""
import os
import tempfile

import numpy as np
import pytest
import scipy.linalg
import torch

os.environ.setdefault("SSM_PTD_CACHE", tempfile.mkdtemp(prefix="ssm-ptd-"))

from ssm_cli.errors import UserError  # noqa: E402
from ssm_cli.layers import build  # noqa: E402
from ssm_cli.layers.hippo import hippo  # noqa: E402
from ssm_cli.layers.ptd import ptd_init  # noqa: E402


def test_ptd_diagonalises_perturbed_legs():
    N = 16
    sol = ptd_init(N)
    A, B = hippo("legs", N)
    V, lam, E = sol["V"], sol["Lambda"], sol["E"]
    np.testing.assert_allclose(V @ np.diag(lam) @ np.linalg.inv(V), A + E, atol=1e-9 * np.abs(A).max())
    np.testing.assert_allclose(V @ sol["B"], B, atol=1e-9)
    exact = np.linalg.cond(np.linalg.eig(A)[1])
    assert exact > 1e8  # LegS itself: ill-conditioned eigenvectors
    assert sol["cond_V"] < 100 and sol["E_ratio"] < 0.2, (sol["cond_V"], sol["E_ratio"])
    core = build("s4d", 2, N, init="ptd")
    assert torch.all(core.eigenvalues().real < 0)  # real parts forced negative in the core
    assert not np.allclose(np.sort(lam.imag), -np.sort(lam.imag)[::-1])  # not conjugate-symmetric


def test_ptd_core_equals_dense_perturbed_system():
    N, L = 8, 30
    core = build("s4d", 2, N, init="ptd", real_transform="none", seed=0, n_ssm=None, dt_transform="exp").double()
    sol = ptd_init(N)
    assert core.eigenvalues().shape == (2, N) and core.init_state(1).shape == (1, 2, N)
    with torch.no_grad():  # float64 values back into the float32-initialised parameters
        core.A_real.copy_(torch.tensor(-sol["Lambda"].real)[None])
        core.A_imag.copy_(torch.tensor(sol["Lambda"].imag)[None])
        core.B.copy_(torch.view_as_real(torch.tensor(sol["B"]))[None])
    c = np.random.default_rng(0).standard_normal(N) + 1j * np.random.default_rng(1).standard_normal(N)
    with torch.no_grad():
        core.C.copy_(torch.view_as_real(torch.tensor(c @ sol["V"]))[None, None].expand_as(core.C))
    dt = float(torch.exp(core.log_dt.detach()[1]))
    A, B = hippo("legs", N)
    aug = np.zeros((N + 1, N + 1), dtype=complex)
    aug[:N, :N], aug[:N, N] = A + sol["E"], B
    Ed = scipy.linalg.expm(dt * aug)
    x, ref = Ed[:N, N], []
    for _ in range(L):
        ref.append((c @ x).real)
        x = Ed[:N, :N] @ x
    np.testing.assert_allclose(core.kernel(L)[0, 1].detach().numpy(), ref, rtol=1e-7, atol=1e-9)
    u = torch.randn(1, L, 2, dtype=torch.float64)
    s, ys = core.init_state(1), []
    for t in range(L):
        y, s = core.step(u[:, t], s)
        ys.append(y)
    torch.testing.assert_close(core(u), torch.stack(ys, 1), rtol=1e-9, atol=1e-9)


def test_ptd_rejects_random_knobs():
    with pytest.raises(UserError, match="ptd"):
        build("s4d", 2, 8, init="ptd", real_random=True)
