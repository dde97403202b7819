"""Convolution of a signal with SSM kernels by FFT (length 2L: no circular wrap-around).

Two implementations of the same map:

* ``fft_conv``: the readable reference, (B, H, L) layout, autograd through torch.fft (kept for tests).
* ``FFTConv`` / ``conv``: what the cores run. One autograd Function with a hand-written backward,
  written to minimise full passes over (B, L, H)-sized tensors on a GPU:
  - zero padding in one write per element: an empty (..., 2L) buffer whose first half receives the
    (transposed) data and whose second half is zeroed, then rfft (no fill-then-copy);
  - the D skip term is folded into tap 0 of the kernel (a flat spectrum D), so there is no separate
    D*u pass forward and no D-gradient reduction backward (D's gradient is tap 0 of the kernel's);
  - the 1/(2L) of the inverse FFT is applied to the small kernel spectrum, not to the output;
  - the output (B, L, C*H) is a strided view of the (B, C, H, 2L) inverse-FFT buffer, no copy;
  - backward in correlation form, from G = rfft of the zero-padded output gradient in natural time
    order: grad_u = irfft(sum_c G_c conj(K_c))[:L] (conj of the small kernel spectrum), returned as a
    transposed view of the (B, H, 2L) buffer (no flip, no gather); the gradient of the circular kernel
    is irfft(sum_b G conj(U)), tap r = lag r (causal kernel: taps 0..L-1; D: tap 0).
    As complex torch ops the conj(U) of that product is materialised (one pass over U, see
    ``_batch_corr``) and so is the (B, C, H, F) product before the batch sum;
  - the two large inverse FFTs (output, input gradient) transform spectral products nothing reads
    again, so on CUDA cuFFT transforms them in place (``cufft.irfft_consuming``): torch's ``irfft``
    would copy its input first, because cuFFT's complex-to-real transform overwrites it;
  - ``compiled=True`` (CUDA, set by the models' ``compiled``): the zero-padding copies are one
    torch.compile'd kernel each (tiled transposed reads, see ``_pad_rfft``), and the three spectral
    products run as torch.compile'd real arithmetic on view_as_real tensors (``product_real``,
    ``grads_real``): one fused kernel each, no conj copy, the batch sum inside the kernel. The
    complex ops stay the reference (and the CPU path); tests check the real forms against them.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .cufft import irfft_consuming


def fft_conv(u: torch.Tensor, k: torch.Tensor, k_back: torch.Tensor | None = None) -> torch.Tensor:
    """y[b,c,h,t] = sum_{s<=t} k[c,h,t-s] u[b,h,s]  (+ sum_{s>t} k_back[c,h,s-t-1] u[b,h,s]).

    u: (B, H, L) float32; k, k_back: (C, H, L) float32 -> y: (B, C, H, L) float32.
    The backward kernel (bidirectional cores) acts on strictly future inputs, as in the S4
    reference: the present input is seen once, by the forward kernel. Reference formulation
    (autograd through torch.fft); the cores run ``conv``.
    """
    L = u.shape[-1]
    if k_back is not None:
        k = F.pad(k, (0, L)) + F.pad(k_back.flip(-1), (L, 0))  # (C H 2L)
    u_f = torch.fft.rfft(u, n=2 * L)  # (B H L+1)
    k_f = torch.fft.rfft(k, n=2 * L)  # (C H L+1)
    y = torch.fft.irfft(u_f[:, None] * k_f, n=2 * L)  # (B C H 2L)
    return y[..., :L]  # (B C H L)


def two_sided(k: torch.Tensor, k_back: torch.Tensor | None = None) -> torch.Tensor:
    """The circular kernel of length 2L of ``fft_conv``: [k, reversed k_back] (C, H, 2L), one cat.

    Tap 2L-1-i holds k_back[i] (lag -(i+1): strictly future inputs). Without ``k_back``: k (C, H, L)
    itself (``conv`` zero-pads it inside the FFT).
    """
    if k_back is None:
        return k  # (C H L)
    return torch.cat([k, k_back.flip(-1)], dim=-1)  # (C H 2L)


def _pad_rfft(x: torch.Tensor, n: int, compiled: bool = False) -> torch.Tensor:
    """rfft of x (..., L) zero-padded to n, x of any strides: one write per element of the buffer.

    (F.pad / rfft(n=) zero-fill the whole buffer and then copy the data in: two passes.)
    ``compiled`` (CUDA): the padding copy is a torch.compile'd F.pad, one kernel whose tiled reads
    of a transposed x run at about 2.8 TB/s where torch's strided copy runs at about 1.0
    (``benchmarks/README.md``).
    """
    if compiled:
        return torch.fft.rfft(_compiled("pad", x, n))
    L = x.shape[-1]
    buf = torch.empty(*x.shape[:-1], n, dtype=x.dtype, device=x.device)
    buf[..., :L].copy_(x)  # the strided read (e.g. a transpose) is fused into this copy
    buf[..., L:].zero_()
    return torch.fft.rfft(buf)


class FFTConv(torch.autograd.Function):
    """y (B, L, C*H) = causal/two-sided convolution of u (B, L, H) with k (C, H, L or 2L) + D u.

    k of length L: a causal kernel (zero-padded to 2L); of length 2L: the circular two-sided kernel
    of ``two_sided``. D (C, H) or None: the skip term, added to tap 0. Output channel c*H + h.
    u and the incoming gradient may have any strides. The output and grad_u are strided views
    (of the (B, C, H, 2L) and (B, H, 2L) inverse-FFT buffers), not contiguous tensors.

    ``residual=True``: also return u itself, for the block's residual connection, so that the
    gradient reaching u through that connection comes into this backward and is added to the
    convolution's input gradient in one pass (``add_transposed``, compiled on CUDA) that reads the
    transposed buffer in tiles; otherwise autograd would sum the two, reading the strided view
    element by element (0.28 ms of a pack's step per layer on an H100). grad_u is then contiguous.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None, compiled: bool = False,
                residual: bool = False):
        B_, L, H = u.shape
        C, n = k.shape[0], 2 * L
        compiled = compiled and u.is_cuda
        # kernel spectrum with 1/n of the inverse FFT and D folded in (D at tap 0 = flat spectrum D)
        k_f = torch.fft.rfft(k, n=n, norm="forward")  # (C H L+1) = DFT(k) / n
        if D is not None:
            k_f = k_f.add(D[..., None], alpha=1.0 / n)  # (C H L+1) = DFT(k + D delta_0) / n
        u_f = _pad_rfft(u.transpose(1, 2), n, compiled)  # (B H L+1); the padding copy does the transpose
        # (B C H 2L), no 1/n pass; cuFFT consumes the product in place (no copy of it first, on CUDA)
        y = irfft_consuming(_spectral_product(u_f, k_f, compiled), n)
        ctx.save_for_backward(u_f, k_f)
        ctx.L, ctx.k_len, ctx.has_D, ctx.compiled = L, k.shape[-1], D is not None, compiled
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None (no zeros)
        # drop the padding, (B, L, C, H) order: a view; C stride = H * (H stride), so (C, H) flattens
        y = y.permute(0, 3, 1, 2)[:, :L].flatten(2)  # (B L C*H) view, no copy
        return (y, u) if residual else y  # u as it came in: autograd makes it a view of the input

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor | None, g_residual: torch.Tensor | None = None):
        u_f, k_f = ctx.saved_tensors  # (B H L+1), (C H L+1)
        L, n = ctx.L, 2 * ctx.L
        B_, C, H = u_f.shape[0], k_f.shape[0], u_f.shape[1]
        if g is None:  # only the residual output was used
            return g_residual, None, None, None, None
        g = g.unflatten(-1, (C, H)).permute(0, 2, 3, 1)  # (B C H L) view (splitting a dim never copies)
        g_f = _pad_rfft(g, n, ctx.compiled)  # (B C H L+1) = G, spectrum of g zero-padded, natural time order
        grad_u = grad_k = grad_D = None
        need_u = ctx.needs_input_grad[0]
        need_k = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        # grad_u[s] = sum_{c,t} g_c[t] k_c[t - s]: a correlation, spectrum q_f = sum_c G_c conj(K_c);
        # dk[r] = sum_{b,t} g[b,t] u[b,(t - r) mod 2L]: circular correlation, spectrum s_f = sum_b G conj(U)
        q_f, s_f = _spectral_grads(g_f, u_f, k_f, need_u, need_k, ctx.compiled)  # (B H L+1), (C H L+1)
        if need_u:
            q = irfft_consuming(q_f, n)  # (B H 2L), 1/n already in k_f; q_f is consumed
            if g_residual is None:
                grad_u = q[..., :L].transpose(1, 2)  # (B L H) view
            elif ctx.compiled:
                grad_u = _compiled("add_t", q, g_residual)  # (B L H) contiguous
            else:
                grad_u = add_transposed(q, g_residual)  # (B L H)
        elif g_residual is not None:
            grad_u = g_residual
        if need_k:
            gk = torch.fft.irfft(s_f, n=n)  # (C H 2L): gradient of the circular kernel, tap r = lag r
            if ctx.needs_input_grad[1]:
                grad_k = gk[..., :ctx.k_len]  # causal: taps 0..L-1 (its zero padding has no gradient)
            if ctx.has_D and ctx.needs_input_grad[2]:
                grad_D = gk[..., 0]  # (C H)
        return grad_u, grad_k, grad_D, None, None


# ---- the spectral products: complex torch ops, or (``compiled``, CUDA) one torch.compile'd kernel of
# real arithmetic per product (no conj copy, no (B C H F) product before the batch sum) ------------
def _spectral_product(u_f: torch.Tensor, k_f: torch.Tensor, compiled: bool) -> torch.Tensor:
    """u_f (B H F) * k_f (C H F) -> (B C H F), complex."""
    if compiled:
        y = _compiled("product", torch.view_as_real(u_f), torch.view_as_real(k_f))
        return torch.view_as_complex(y)
    return u_f[:, None] * k_f


def _spectral_grads(g_f: torch.Tensor, u_f: torch.Tensor, k_f: torch.Tensor, need_q: bool, need_s: bool,
                    compiled: bool):
    """q_f = sum_c g_f conj(k_f) (B H F) and s_f = sum_b g_f conj(u_f) (C H F), complex; None where
    not needed. g_f (B C H F), u_f (B H F), k_f (C H F)."""
    if compiled:
        q, s = _compiled("grads", torch.view_as_real(g_f), torch.view_as_real(u_f), torch.view_as_real(k_f),
                         need_q, need_s)
        return (torch.view_as_complex(q) if need_q else None), (torch.view_as_complex(s) if need_s else None)
    q_f = s_f = None
    if need_q:
        C = k_f.shape[0]
        k_c = k_f.conj().resolve_conj()  # (C H F), small: conjugate it, never the big side
        q_f = g_f[:, 0] * k_c[0] if C == 1 else (g_f * k_c).sum(1)
    if need_s:
        s_f = _batch_corr(g_f, u_f)
    return q_f, s_f


def product_real(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``u_f[:, None] * k_f`` on view_as_real tensors: u (B H F 2), k (C H F 2) -> (B C H F 2)."""
    ur, ui = u[:, None, ..., 0], u[:, None, ..., 1]
    kr, ki = k[..., 0], k[..., 1]
    return torch.stack([ur * kr - ui * ki, ur * ki + ui * kr], dim=-1)


def grads_real(g: torch.Tensor, u: torch.Tensor, k: torch.Tensor, need_q: bool = True, need_s: bool = True):
    """``_spectral_grads`` on view_as_real tensors: g (B C H F 2), u (B H F 2), k (C H F 2) ->
    q (B H F 2) = sum_c g conj(k), s (C H F 2) = sum_b g conj(u) (None where not needed)."""
    gr, gi = g[..., 0], g[..., 1]
    q = s = None
    if need_q:
        kr, ki = k[..., 0], k[..., 1]
        q = torch.stack([(gr * kr + gi * ki).sum(1), (gi * kr - gr * ki).sum(1)], dim=-1)
    if need_s:
        ur, ui = u[:, None, ..., 0], u[:, None, ..., 1]
        s = torch.stack([(gr * ur + gi * ui).sum(0), (gi * ur - gr * ui).sum(0)], dim=-1)
    return q, s


def add_transposed(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """g + q[..., :L] transposed: q (B, H, n >= L), g (B, L, H) -> (B, L, H) contiguous."""
    return (g + q[..., :g.shape[1]].transpose(1, 2)).contiguous()


def pad_real(x: torch.Tensor, n: int) -> torch.Tensor:
    """x (..., L) of any strides zero-padded to (..., n), contiguous."""
    return F.pad(x, (0, n - x.shape[-1]))


_FUNCTIONS = {"pad": pad_real, "product": product_real, "grads": grads_real, "add_t": add_transposed}
_COMPILED: dict = {}


def _compiled(name: str, *args):
    """``_FUNCTIONS[name]`` torch.compile'd for exactly these arguments, and called on them.

    One compiled function per name, argument shapes / strides / dtypes / values and autocast cache
    state, each from its own copy of the code object: torch.compile caches per code object and
    stops compiling (``recompile_limit``, 8) after that many variants of one, which a process that
    sees many shapes (evaluation batches, tests) would reach. So nothing here is ever recompiled.
    """
    key = (name, torch.is_autocast_cache_enabled(),
           *((a.shape, a.stride(), a.dtype, a.device) if isinstance(a, torch.Tensor) else a for a in args))
    fn = _COMPILED.get(key)
    if fn is None:
        f = _FUNCTIONS[name]
        own = types.FunctionType(f.__code__.replace(), f.__globals__, f.__name__, f.__defaults__, f.__closure__)
        fn = _COMPILED[key] = torch.compile(own, dynamic=False, fullgraph=True)
    return fn(*args)


def _batch_corr(g_f: torch.Tensor, u_f: torch.Tensor) -> torch.Tensor:
    """sum_b g_f[b, c, h, f] conj(u_f[b, h, f]): (B C H F), (B H F) -> (C H F).

    mul + sum. Eager torch resolves the conj view of u_f into a copy (mul, linalg.vecdot and einsum
    all do); batched-matmul forms (complex with a conj-transposed operand, or real 2x2 blocks over
    view_as_real) avoid the product and the conj but were 2-4x slower on an H100 at B=250, H=128,
    L=1024, so the conj pass is kept. Conjugating g_f instead costs the same for C=1, more for C>1.
    """
    return (g_f * u_f.conj()[:, None]).sum(0)


def conv(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None, compiled: bool = False,
         residual: bool = False):
    """u (B, L, H), k (C, H, L) causal or (C, H, 2L) two-sided (``two_sided``), D (C, H) -> (B, L, C*H).

    Same numbers (up to float rounding) as ``fft_conv`` plus D u, in the network's layout.
    ``compiled``: the spectral products as torch.compile'd real arithmetic (CUDA only; ignored on CPU).
    ``residual``: returns (y, u'), u' the same values as u, to be used in place of u afterwards
    (the block's residual): the gradient through u' joins the convolution's in its backward.
    """
    return FFTConv.apply(u, k, D, compiled, residual)
