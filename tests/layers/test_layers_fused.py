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
    assert new.is_contiguous()
    torch.testing.assert_close(new, ref)
    gy = torch.randn_like(ref)
    ins = [u, k, D] + ([kb] if bidirectional else [])
    for a, b in zip(torch.autograd.grad(new, ins, gy), torch.autograd.grad(ref, ins, gy)):
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
    torch.testing.assert_close(y, x * mask / (1 - 0.3))
