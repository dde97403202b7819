"""FFTConv (strided views, correlation-form backward) against autograd through the reference fft_conv."""
import pytest
import torch

from ssm_cli.layers.fftconv import (FFTConv, _batch_corr, add_transposed, conv, fft_conv, grads_real,
                                     product_real)

F64 = torch.float64


def reference(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None) -> torch.Tensor:
    """fft_conv + D u in the (B, L, C*H) layout; k (C, H, L) causal or (C, H, 2L) circular."""
    B, L, H = u.shape
    C = k.shape[0]
    x = u.transpose(1, 2)  # (B H L)
    if k.shape[-1] == 2 * L:  # circular kernel [k, reversed k_back] (two_sided)
        y = fft_conv(x, k[..., :L], k[..., L:].flip(-1))
    else:
        y = fft_conv(x, k)
    if D is not None:
        y = y + D[None, :, :, None] * x[:, None]
    return y.reshape(B, C * H, L).transpose(1, 2)


def tight(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11 * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("C", [1, 2])
@pytest.mark.parametrize("with_D", [False, True])
@pytest.mark.parametrize("L", [1, 2, 7, 16])
@pytest.mark.parametrize("B", [1, 3])
def test_fftconv_values_and_grads_float64(two_sided, C, with_D, L, B):
    torch.manual_seed(L + 10 * B + 100 * C)
    H = 4
    u = torch.randn(B, L, H, dtype=F64, requires_grad=True)
    k = torch.randn(C, H, 2 * L if two_sided else L, dtype=F64, requires_grad=True)
    D = torch.randn(C, H, dtype=F64, requires_grad=True) if with_D else None
    new, ref = conv(u, k, D), reference(u, k, D)
    assert new.shape == (B, L, C * H)
    tight(new, ref)
    gy = torch.randn_like(ref)
    ins = [u, k] + ([D] if with_D else [])
    for a, b in zip(torch.autograd.grad(new, ins, gy), torch.autograd.grad(ref, ins, gy)):
        assert a.shape == b.shape
        tight(a, b)


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("C", [1, 2])
def test_fftconv_gradcheck(two_sided, C):
    torch.manual_seed(0)
    B, L, H = 2, 5, 3
    u = torch.randn(B, L, H, dtype=F64, requires_grad=True)
    k = torch.randn(C, H, 2 * L if two_sided else L, dtype=F64, requires_grad=True)
    D = torch.randn(C, H, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(FFTConv.apply, (u, k, D))
    assert torch.autograd.gradcheck(lambda u, k: FFTConv.apply(u, k, None), (u, k))


@pytest.mark.parametrize("C", [1, 2])
def test_fftconv_output_and_input_grad_are_views_not_copies(C):
    """y is a view of the (B, C, H, 2L) inverse-FFT buffer, grad_u one of the (B, H, 2L) buffer."""
    B, L, H = 2, 8, 3
    u = torch.randn(B, L, H, dtype=F64, requires_grad=True)
    k = torch.randn(C, H, 2 * L, dtype=F64)
    y = conv(u, k)
    assert y._base is not None and y._base.shape == (B, C, H, 2 * L)
    assert y.data_ptr() == y._base.data_ptr()
    assert y.stride() == (C * H * 2 * L, 1, 2 * L)
    assert y.untyped_storage().nbytes() == B * C * H * 2 * L * y.element_size()  # no second buffer
    (gu,) = torch.autograd.grad(y, u, torch.randn_like(y))
    assert gu._base is not None and gu._base.shape == (B, H, 2 * L)
    assert gu.stride() == (H * 2 * L, 1, 2 * L)


@pytest.mark.parametrize("two_sided", [False, True])
def test_fftconv_noncontiguous_input_and_gradient(two_sided):
    """u a transposed view (as from a previous layer's output), g a non-contiguous tensor."""
    torch.manual_seed(2)
    B, L, H, C = 3, 9, 4, 2
    u0 = torch.randn(B, H, L, dtype=F64, requires_grad=True)
    u = u0.transpose(1, 2)  # (B L H), not contiguous
    k = torch.randn(C, H, 2 * L if two_sided else L, dtype=F64, requires_grad=True)
    D = torch.randn(C, H, dtype=F64, requires_grad=True)
    gy = torch.randn(C * H, B, L, dtype=F64).permute(1, 2, 0)  # (B L C*H), not contiguous
    assert not u.is_contiguous() and not gy.is_contiguous()
    new, ref = conv(u, k, D), reference(u, k, D)
    tight(new, ref)
    ins = [u0, k, D]
    for a, b in zip(torch.autograd.grad(new, ins, gy), torch.autograd.grad(ref, ins, gy)):
        tight(a, b)
    # and through a strided consumer of the (strided) output, as in the network
    ln = torch.nn.LayerNorm(C * H, dtype=F64)
    for a, b in zip(torch.autograd.grad(ln(conv(u, k, D)).square().sum(), ins),
                    torch.autograd.grad(ln(reference(u, k, D)).square().sum(), ins)):
        tight(a, b)


@pytest.mark.parametrize("wanted", [(True, False, False), (False, True, False), (False, False, True),
                                    (False, True, True)])
def test_fftconv_partial_input_grads(wanted):
    torch.manual_seed(3)
    B, L, H, C = 2, 6, 3, 2
    u = torch.randn(B, L, H, dtype=F64, requires_grad=wanted[0])
    k = torch.randn(C, H, 2 * L, dtype=F64, requires_grad=wanted[1])
    D = torch.randn(C, H, dtype=F64, requires_grad=wanted[2])
    ins = [t for t, w in zip((u, k, D), wanted) if w]
    gy = torch.randn(B, L, C * H, dtype=F64)
    for a, b in zip(torch.autograd.grad(conv(u, k, D), ins, gy), torch.autograd.grad(reference(u, k, D), ins, gy)):
        tight(a, b)


@pytest.mark.parametrize("two_sided", [False, True])
def test_fftconv_float32_error_not_worse_than_reference(two_sided):
    """float32 conv vs float64 truth: within a small factor of the float32 reference's own error."""
    torch.manual_seed(4)
    B, L, H, C = 4, 1024, 8, 1
    u = torch.randn(B, L, H, dtype=F64, requires_grad=True)
    k = (torch.randn(C, H, 2 * L if two_sided else L, dtype=F64) * 0.05).requires_grad_()
    D = torch.randn(C, H, dtype=F64, requires_grad=True)
    gy = torch.randn(B, L, C * H, dtype=F64)
    ins = [u, k, D]
    truth = [reference(u, k, D)] + list(torch.autograd.grad(reference(u, k, D), ins, gy))
    ins32 = [t.detach().float().requires_grad_() for t in ins]
    new_y = conv(*ins32)
    new = [new_y] + list(torch.autograd.grad(new_y, ins32, gy.float()))
    ref_y = reference(*ins32)
    ref = [ref_y] + list(torch.autograd.grad(ref_y, ins32, gy.float()))
    for t, a, b in zip(truth, new, ref):
        scale = t.abs().max().item()
        err_new = (a.double() - t).abs().max().item() / scale
        err_ref = (b.double() - t).abs().max().item() / scale
        assert err_new < 1e-5 and err_new <= 3 * err_ref + 1e-7, (err_new, err_ref)


@pytest.mark.parametrize("C", [1, 3])
def test_real_arithmetic_spectral_products_equal_the_complex_ones(C):
    """The forms ``compiled=True`` compiles (on view_as_real tensors) = the complex torch ops."""
    torch.manual_seed(5)
    B_, H, Fr = 4, 3, 9
    cplx = lambda *shape: torch.randn(*shape, dtype=torch.complex128)  # noqa: E731
    u_f, k_f, g_f = cplx(B_, H, Fr), cplx(C, H, Fr), cplx(B_, C, H, Fr)
    r = torch.view_as_real
    y = torch.view_as_complex(product_real(r(u_f), r(k_f)))
    tight(y, u_f[:, None] * k_f)
    for need_q, need_s in ((True, True), (True, False), (False, True)):
        q, s = grads_real(r(g_f), r(u_f), r(k_f), need_q, need_s)
        assert (q is None) != need_q and (s is None) != need_s
        if need_q:  # sum_c G_c conj(K_c), written out
            tight(torch.view_as_complex(q), sum(g_f[:, c] * k_f[c].conj() for c in range(C)))
        if need_s:  # sum_b G_b conj(U_b), written out, and the complex-op path
            tight(torch.view_as_complex(s), sum(g_f[b] * u_f[b].conj()[None] for b in range(B_)))
            tight(torch.view_as_complex(s), _batch_corr(g_f, u_f))


def test_compiled_functions_never_hit_the_recompile_limit(monkeypatch):
    """One compiled function per argument signature, each on its own code object: more shapes than
    torch.compile's recompile limit (8) all compile (fullgraph=True would raise otherwise); a seen
    signature reuses its function. Dynamo's eager backend stands in for inductor (no GPU here)."""
    from ssm_cli.layers import fftconv as fc

    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda f, **kw: compile_(f, backend="eager", **kw))
    monkeypatch.setattr(fc, "_COMPILED", {})
    for i in range(12):
        x = torch.randn(2, 3 + i, 5).transpose(1, 2)  # (2 5 3+i), strided
        tight(fc._compiled("pad", x, 16), torch.nn.functional.pad(x, (0, 16 - x.shape[-1])))
    fc._compiled("pad", torch.randn(2, 3, 5).transpose(1, 2), 16)
    assert len(fc._COMPILED) == 12


def test_compiled_flag_is_ignored_on_the_cpu():
    """``compiled=True`` needs CUDA; on the CPU it runs the complex ops (no torch.compile)."""
    torch.manual_seed(6)
    u, k, D = torch.randn(2, 8, 3, dtype=F64), torch.randn(1, 3, 16, dtype=F64), torch.randn(1, 3, dtype=F64)
    tight(conv(u, k, D, compiled=True), conv(u, k, D))


@pytest.mark.gpu
@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("C", [1, 2])
@pytest.mark.parametrize("two_sided", [False, True])
def test_fftconv_on_the_gpu_equals_the_reference(C, two_sided, compiled):
    torch.manual_seed(C)
    B_, L, H = 4, 256, 16
    u = torch.randn(B_, L, H, dtype=torch.float64)
    k = torch.randn(C, H, 2 * L if two_sided else L, dtype=torch.float64) / L
    D = torch.randn(C, H, dtype=torch.float64)
    g = torch.randn(B_, L, C * H, dtype=torch.float64)

    def run(device, dtype):
        ts = [t.to(device, dtype).requires_grad_() for t in (u, k, D)]
        y = conv(*ts, compiled=compiled)
        grads = torch.autograd.grad(y, ts, g.to(device, dtype))
        return [t.double().cpu() for t in (y, *grads)]

    for got, ref in zip(run("cuda", torch.float32), run("cpu", torch.float64)):
        torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3 * ref.abs().max().item())


@pytest.mark.gpu
def test_compiled_conv_on_many_shapes():
    """More shapes than torch.compile's recompile limit through ``conv(compiled=True)``, forward and
    backward, each equal to the complex-op path."""
    for i in range(10):
        B_, L, H = 1 + i % 3, 16 * (1 + i), 4 + i
        ins = [torch.randn(B_, L, H, device="cuda"), torch.randn(1, H, 2 * L, device="cuda") / L,
               torch.randn(1, H, device="cuda")]
        g = torch.randn(B_, L, H, device="cuda")
        outs = []
        for compiled in (True, False):
            ts = [t.clone().requires_grad_() for t in ins]
            y = conv(*ts, compiled=compiled)
            outs.append([y, *torch.autograd.grad(y, ts, g)])
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("use", ["both", "y", "residual"])
@pytest.mark.parametrize("two_sided", [False, True])
def test_residual_output_sums_both_gradients(use, two_sided):
    """conv(residual=True) returns (y, u'): u' has u's values, and the gradients of any function of
    y and u' are those of the same function of conv(u) and u itself (autograd's sum)."""
    torch.manual_seed(11)
    B_, L, H, C = 2, 9, 3, 2
    ins = [torch.randn(B_, L, H, dtype=F64), torch.randn(C, H, 2 * L if two_sided else L, dtype=F64),
           torch.randn(C, H, dtype=F64)]
    gy, gr = torch.randn(B_, L, C * H, dtype=F64), torch.randn(B_, L, H, dtype=F64)

    def loss(y, r):  # an output left out is not in the graph: its gradient comes in as None
        terms = ([(y * gy).sum()] if use != "residual" else []) + ([(r.sin() * gr).sum()] if use != "y" else [])
        return sum(terms)

    ts = [t.clone().requires_grad_() for t in ins]
    y, r = conv(*ts, residual=True)
    assert torch.equal(r, ins[0])
    got = torch.autograd.grad(loss(y, r), ts, allow_unused=True)
    ref_ts = [t.clone().requires_grad_() for t in ins]
    want = torch.autograd.grad(loss(conv(*ref_ts), ref_ts[0]), ref_ts, allow_unused=True)
    for a, b in zip(got, want):
        assert (a is None) == (b is None)
        if b is not None:
            tight(a, b)
    if use == "both":
        assert got[0].is_contiguous()  # summed in one pass, not a strided view


def test_add_transposed_is_the_transposed_sum():
    torch.manual_seed(12)
    q, g = torch.randn(2, 3, 10), torch.randn(2, 4, 3)
    out = add_transposed(q, g)
    assert out.is_contiguous()
    torch.testing.assert_close(out, g + q[..., :4].transpose(1, 2), rtol=0, atol=0)


@pytest.mark.gpu
def test_residual_output_on_the_gpu_compiled():
    """The compiled sum (``add_transposed``) equals autograd's, and its result is contiguous."""
    torch.manual_seed(13)
    B_, L, H = 3, 64, 8
    ins = [torch.randn(B_, L, H, device="cuda"), torch.randn(1, H, 2 * L, device="cuda") / L,
           torch.randn(1, H, device="cuda")]
    gy, gr = torch.randn(B_, L, H, device="cuda"), torch.randn(B_, L, H, device="cuda")
    ts = [t.clone().requires_grad_() for t in ins]
    y, r = conv(*ts, compiled=True, residual=True)
    got = torch.autograd.grad((y * gy).sum() + (r * gr).sum(), ts)
    ref_ts = [t.clone().requires_grad_() for t in ins]
    want = torch.autograd.grad((conv(*ref_ts, compiled=True) * gy).sum() + (ref_ts[0] * gr).sum(), ref_ts)
    assert got[0].is_contiguous()
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())
