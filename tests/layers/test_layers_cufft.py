"""cufft.irfft_consuming (cuFFT's C2R on the spectrum's own memory) against torch.fft.irfft."""
import sys

import pytest
import torch

from ssm_cli.layers import cufft
from ssm_cli.layers.fftconv import conv


def spectrum(*shape: int, n: int, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """rfft of random real signals of length n: a valid (Hermitian) half spectrum (..., n//2 + 1)."""
    return torch.fft.rfft(torch.randn(*shape, n, dtype=dtype, device=device), norm="forward")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_off_cuda_it_is_torchs_irfft_and_leaves_the_input_alone(dtype):
    torch.manual_seed(0)
    x_f = spectrum(3, 5, n=32, dtype=dtype)
    before = x_f.clone()
    got = cufft.irfft_consuming(x_f, 32)
    assert torch.equal(got, torch.fft.irfft(before, n=32, norm="forward"))
    assert torch.equal(x_f, before)


def test_the_library_is_the_one_torch_loaded():
    """A CUDA build of torch on Linux has libcufft mapped once imported; ours is that file."""
    path = cufft._library_path()
    if not (torch.version.cuda and sys.platform.startswith("linux")):
        assert path is None or "libcufft" in path
        return
    assert path is not None and "/libcufft.so" in path
    assert cufft.library() is not None


@pytest.mark.gpu
@pytest.mark.parametrize("shape,n", [((4, 3), 64), ((50, 640), 2048), ((7,), 2), ((2, 1, 5), 1024)])
def test_on_cuda_it_equals_torchs_irfft(shape, n):
    torch.manual_seed(n)
    x_f = spectrum(*shape, n=n, device="cuda")
    ref = torch.fft.irfft(x_f, n=n, norm="forward")
    got = cufft.irfft_consuming(x_f.clone(), n)
    assert got.shape == ref.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6 * ref.abs().max().item())
    assert (x_f.device.index, n, x_f.numel() // x_f.shape[-1]) in cufft._plans  # cuFFT's path, not the fallback


@pytest.mark.gpu
def test_on_cuda_a_strided_input_and_the_switch():
    torch.manual_seed(1)
    x_f = spectrum(6, 4, n=128, device="cuda").transpose(0, 1)  # (4 6 65), not contiguous
    ref = torch.fft.irfft(x_f, n=128, norm="forward")
    torch.testing.assert_close(cufft.irfft_consuming(x_f, 128), ref, rtol=1e-6, atol=1e-6)
    cufft.ENABLED = False
    try:
        kept = x_f.clone()
        assert torch.equal(cufft.irfft_consuming(x_f, 128), ref)
        assert torch.equal(x_f, kept)  # torch's path copies: the input survives
    finally:
        cufft.ENABLED = True


@pytest.mark.gpu
def test_captured_in_a_cuda_graph_and_replayed_on_new_data():
    torch.manual_seed(2)
    n = 256
    static = spectrum(8, 3, n=n, device="cuda")
    cufft.irfft_consuming(static.clone(), n)  # the plan exists before the capture, as after warm-up steps
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        work = static * 1.0  # a temporary the transform may consume; static survives
        out = cufft.irfft_consuming(work, n)
    for seed in (3, 4):
        torch.manual_seed(seed)
        static.copy_(spectrum(8, 3, n=n, device="cuda"))
        graph.replay()
        ref = torch.fft.irfft(static, n=n, norm="forward")
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6 * ref.abs().max().item())


@pytest.mark.gpu
def test_no_plan_is_made_during_a_capture():
    torch.manual_seed(5)
    n, x_f = 96, spectrum(5, n=96, device="cuda")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = cufft.irfft_consuming(x_f * 1.0, n)  # no plan of this size yet: torch's irfft is captured
    graph.replay()
    assert (x_f.device.index, n, 5) not in cufft._plans
    torch.testing.assert_close(out, torch.fft.irfft(x_f, n=n, norm="forward"), rtol=1e-6, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("compiled", [False, True])
def test_fftconv_with_and_without_the_in_place_inverse(compiled):
    """The convolution's output and all gradients are the same with cuFFT consuming its inputs."""
    torch.manual_seed(7)
    B_, L, H, C = 3, 128, 8, 2
    ins = [torch.randn(B_, L, H, device="cuda"), torch.randn(C, H, 2 * L, device="cuda") / L,
           torch.randn(C, H, device="cuda")]
    g = torch.randn(B_, L, C * H, device="cuda")
    outs = []
    for enabled in (True, False):
        cufft.ENABLED = enabled
        try:
            ts = [t.clone().requires_grad_() for t in ins]
            y = conv(*ts, compiled=compiled)
            outs.append([y, *torch.autograd.grad(y, ts, g)])
        finally:
            cufft.ENABLED = True
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())
