"""The fused rewrites of the layers against their readable reference formulations (float64)."""
import pytest
import torch

from ssm_cli.layers.backbone import TiedDropout
from ssm_cli.layers.fftconv import conv, fft_conv, two_sided


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("C", [1, 2])
@pytest.mark.parametrize("L", [1, 7, 32])
def test_fused_conv_equals_reference_plus_explicit_D(bidirectional, C, L):
    """conv (D folded into tap 0, (B, L, H) layout, hand-written backward) == fft_conv + D u."""
    torch.manual_seed(0)
    B, H = 3, 5
    f64 = dict(dtype=torch.float64, requires_grad=True)
    u = torch.randn(B, L, H, **f64)
    k, D = torch.randn(C, H, L, **f64), torch.randn(C, H, **f64)
    kb = torch.randn(C, H, L, **f64) if bidirectional else None
    x = u.transpose(1, 2)  # (B H L)
    ref = fft_conv(x, k, kb) + D[None, :, :, None] * x[:, None]  # (B C H L)
    ref = ref.reshape(B, C * H, L).transpose(1, 2)  # (B L C*H)
    new = conv(u, two_sided(k, kb), D)
    assert new.shape == (B, L, C * H)  # a strided view of the inverse-FFT buffer (test_layers_fftconv_layout)
    torch.testing.assert_close(new, ref)
    gy = torch.randn_like(ref)
    ins = [u, k, D] + ([kb] if bidirectional else [])
    grads = torch.autograd.grad(new, ins, gy)
    assert grads[0].shape == u.shape  # a transposed view of the (B, H, 2L) inverse-FFT buffer
    for a, b in zip(grads, torch.autograd.grad(ref, ins, gy)):
        torch.testing.assert_close(a, b)


def test_fused_conv_without_D_and_input_grad_only():
    torch.manual_seed(1)
    u = torch.randn(2, 9, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 4, 9, dtype=torch.float64)
    ref = fft_conv(u.transpose(1, 2), k).reshape(2, 4, 9).transpose(1, 2)
    new = conv(u, k)
    torch.testing.assert_close(new, ref)
    torch.testing.assert_close(torch.autograd.grad(new.sum(), u)[0], torch.autograd.grad(ref.sum(), u)[0])


def test_tied_dropout_equals_mask_then_divide():
    """Scaling the (B, 1, H) mask first == x * mask / (1 - p)."""
    x = torch.randn(4, 30, 8, dtype=torch.float64)
    d = TiedDropout(0.3).train()
    torch.manual_seed(3)
    y = d(x)
    torch.manual_seed(3)
    mask = torch.rand(4, 1, 8) >= 0.3
    torch.testing.assert_close(y, x * mask / (1 - 0.3), rtol=1e-14, atol=0)  # float64 scale, not float32


@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64])
@pytest.mark.parametrize("C,H,M,L,block", [(2, 5, 4, 37, None), (1, 3, 4, 1000, None), (3, 2, 2, 50, 7),
                                           (2, 4, 3, 64, 64)])
def test_complex_vandermonde_equals_real_formulation(dtype, C, H, M, L, block):
    """The complex-table kernel == the former real-arithmetic blocked product, values and gradients."""
    from ssm_cli.layers.kernel import _vandermonde_real, vandermonde
    torch.manual_seed(0)
    z = torch.complex(-torch.rand(H, M) * 0.1, torch.randn(H, M)).to(dtype).requires_grad_()
    W = torch.randn(C, H, M, dtype=dtype).requires_grad_()
    new, old = vandermonde(W, z, L, block), _vandermonde_real(W, z, L, block)
    tol = dict(rtol=1e-5, atol=1e-5 * old.abs().max().item()) if dtype == torch.complex64 else {}
    torch.testing.assert_close(new, old, **tol)
    g = torch.randn_like(old)
    for a, b in zip(torch.autograd.grad(new, [W, z], g), torch.autograd.grad(old, [W, z], g)):
        torch.testing.assert_close(a, b, **({} if dtype == torch.complex128 else
                                          dict(rtol=1e-5, atol=1e-5 * b.abs().max().item())))


def test_core_forward_equals_explicit_formula():
    """SSMCore.forward (fused conv, D in tap 0) == reference conv of core.kernel + explicit D term."""
    from ssm_cli.layers import build
    torch.manual_seed(0)
    for bidirectional in (False, True):
        core = build("s4d", 6, 8, bidirectional=bidirectional, channels=2, n_ssm=1, seed=0).double()
        u = torch.randn(3, 40, 6, dtype=torch.float64)
        k = core.kernel(40)
        x = u.transpose(1, 2)
        ref = fft_conv(x, *(k if bidirectional else (k,))) + core.D[None, :, :, None] * x[:, None]
        torch.testing.assert_close(core(u), ref.reshape(3, 12, 40).transpose(1, 2))


def test_block_post_is_the_former_tail_and_compile_is_off_by_default():
    """A block = core -> Block.post; compiled is opt-in (no torch.compile by default)."""
    import torch.nn.functional as F
    from ssm_cli.layers import SequenceModel
    torch.manual_seed(0)
    m = SequenceModel(3, 10, d_model=8, n_layers=1, d_state=4, dropout=0.0).double().eval()
    from ssm_cli.layers.backbone import block_forward
    blk = m.blocks[0]
    assert not m.compiled and m._posts(m.blocks) == [blk.post]
    x = torch.randn(2, 16, 8, dtype=torch.float64)
    z = blk.out(F.gelu(blk.core(x)))
    torch.testing.assert_close(block_forward([blk], blk.post, x, 1.0, False), blk.norm(x + z))


@pytest.mark.parametrize("scale", [2.0, 1.0])
def test_zoh_weights_equal_autograd_through_zoh(scale):
    """discretize.zoh_weights (hand-written backward) == zoh then scale * C * Bbar, values and gradients."""
    from ssm_cli.layers.discretize import zoh, zoh_weights
    torch.manual_seed(0)
    H, M, dC = 5, 4, 2
    A = torch.complex(-torch.rand(1, M, dtype=torch.float64) - 0.1, torch.randn(1, M, dtype=torch.float64))
    A.requires_grad_()
    dt = torch.rand(H, dtype=torch.float64).requires_grad_()
    B = torch.randn(1, M, dtype=torch.complex128).requires_grad_()
    C = torch.randn(dC, H, M, dtype=torch.complex128).requires_grad_()
    Ae, Be = A.expand(H, M), B.expand(H, M)  # the S = 1 broadcast of the sCIFAR model
    z1, Bbar = zoh(Ae, dt, Be)
    W1 = scale * C * Bbar
    z2, W2 = zoh_weights(Ae, dt, Be, C, scale)
    torch.testing.assert_close(z2, z1)
    torch.testing.assert_close(W2, W1)
    gz, gW = torch.randn_like(z1), torch.randn_like(W1)
    loss1 = (z1 * gz.conj()).real.sum() + (W1 * gW.conj()).real.sum()
    loss2 = (z2 * gz.conj()).real.sum() + (W2 * gW.conj()).real.sum()
    for a, b in zip(torch.autograd.grad(loss2, [A, dt, B, C]), torch.autograd.grad(loss1, [A, dt, B, C])):
        torch.testing.assert_close(a, b)
