"""Per-member linear maps of a pack as one GEMM, members kept apart also through NaN and Inf.

A pack (``backbone.PackedModel``) runs K members' activations side by side, (..., K*I), member
major. ``packed_linear`` applies member k's own linear map to its slice. A member that diverges
(its activations or gradients not finite) leaves the others' outputs and gradients exactly as
they are beside a finite member, and its own stay non-finite, so its divergence is seen
(``BlockDiagonalLinear``: the one place where members meet in one GEMM, where NaN * 0 = NaN
would otherwise spread it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


BLOCK_DIAGONAL_MAX_K = 8  # up to this many members, per-member linears run as one block-diagonal GEMM


def _finite(t: torch.Tensor) -> torch.Tensor:
    """t with its NaN and +-Inf entries replaced by 0 (one elementwise pass)."""
    return torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)


def _member_poison(t: torch.Tensor, K: int) -> torch.Tensor:
    """(..., K, 1): 0 where member k's slice of t (..., K*n) is finite, NaN where it is not
    (max |t| is NaN or Inf there, and NaN * 0 = Inf * 0 = NaN; one reading pass)."""
    return torch.linalg.vector_norm(t.unflatten(-1, (K, -1)), ord=float("inf"), dim=-1, keepdim=True) * 0  # (... K 1)


def _finite_on_host(t: torch.Tensor) -> bool:
    """True if t is on the CPU, outside torch.compile, and all finite: then the plain GEMM is
    exact and the guards can be skipped (they cost ~15% of an eager CPU step). Its sum, one pass,
    is finite iff every entry is, unless the sum overflows (then False: the guarded path, which is
    right either way). On a GPU, and in compiled code, never: no host sync, no branch on data."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling() and bool(torch.isfinite(t.sum()))


def _poisoned(out: torch.Tensor, poison: torch.Tensor, K: int) -> torch.Tensor:
    """out (..., K*n) with member k's slice replaced by NaN where ``poison`` (..., K, 1) is; the
    other entries exactly as they were."""
    out_k = out.unflatten(-1, (K, -1))  # (... K n)
    return torch.where(torch.isfinite(poison), out_k, poison.to(out.dtype)).flatten(-2)  # (... K*n)


class BlockDiagonalLinear(torch.autograd.Function):
    """K linear maps as one GEMM with the block-diagonal weight, the members kept apart also when
    values are not finite.

    IEEE arithmetic has NaN * 0 = Inf * 0 = NaN: in a plain block-diagonal GEMM, a member whose
    activations (forward) or output gradients (backward) hold a NaN or Inf would make every member's
    results NaN through the zero blocks. So each GEMM gets its input with the non-finite entries
    replaced by 0, and the member whose entries they were is made NaN afterwards:

    - forward: member k's outputs of a row are NaN where its input row is not finite (its own linear
      map gives NaN or +-Inf there: never a finite value, so a diverged member's loss stays NaN);
    - backward: the input gradient of member k is NaN in the rows where its output gradient is not
      finite; its weight and bias gradients are all NaN if any entry of its output gradient is
      not. The weight gradient is the diagonal blocks of z^T g: member k's block holds only
      member k's numbers (the off-diagonal blocks, where members meet, are dropped).

    For finite values every result is the plain GEMM's to float rounding (the weight gradient is
    z^T g, autograd's g^T z: a BLAS may sum them in other orders). The guards are elementwise ops
    and small reductions, which torch.compile fuses into the neighbouring kernels for the most part
    (the packed tail is compiled on a GPU); eager on the CPU they are skipped when a tensor's sum
    shows it finite (``_finite_on_host``).

    z (..., K*I) member-major, W (K, O, I), b (K, O) -> (..., K*O). Under autocast the GEMM runs in
    the autocast dtype as ``F.linear`` does; the backward runs in the output gradient's dtype.
    """

    @staticmethod
    def forward(ctx, z, W, b):
        K = W.shape[0]
        ctx.save_for_backward(z, W)
        W_bd = torch.block_diag(*W.unbind(0))  # (K*O K*I)
        if _finite_on_host(z):
            return F.linear(z, W_bd, b.reshape(-1))  # (... K*O)
        out = F.linear(_finite(z), W_bd, b.reshape(-1))  # (... K*O)
        return _poisoned(out, _member_poison(z, K), K)  # (... K*O)

    @staticmethod
    def backward(ctx, g):
        z, W = ctx.saved_tensors
        K, O, I = W.shape
        dt = g.dtype  # the GEMM's dtype (the autocast dtype under autocast)
        poison = None if _finite_on_host(g) else _member_poison(g, K)  # (... K 1)
        gs = g if poison is None else _finite(g)  # (... K*O): only gs is read below (one tensor)
        gz = gW = gb = None
        if ctx.needs_input_grad[0]:
            gz = torch.matmul(gs, torch.block_diag(*W.to(dt).unbind(0)))  # (... K*I)
            if poison is not None:
                gz = _poisoned(gz, poison, K)  # (... K*I)
        # member k's whole weight and bias gradients NaN if any of its output gradient is not
        pk = None if poison is None else poison.reshape(-1, K).sum(0)  # (K)
        if ctx.needs_input_grad[1]:
            # as autograd computes F.linear's weight gradient (z^T g, transposed); its diagonal blocks
            full = z.reshape(-1, K * I).to(dt).t().mm(gs.reshape(-1, K * O))  # (K*I K*O)
            gW = full.view(K, I, K, O).diagonal(dim1=0, dim2=2).permute(2, 1, 0)  # (K O I)
            if pk is not None:
                gW = torch.where(torch.isfinite(pk)[:, None, None], gW, pk[:, None, None].to(dt))  # (K O I)
        if ctx.needs_input_grad[2]:
            gb = gs.reshape(-1, K * O).sum(0).view(K, O)  # (K O)
            if pk is not None:
                gb = torch.where(torch.isfinite(pk)[:, None], gb, pk[:, None].to(dt))  # (K O)
        return gz, gW, gb


def packed_linear(z: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """K linear maps side by side: z (..., K*I) member-major, W (K, O, I), b (K, O) -> (..., K*O).

    Up to ``BLOCK_DIAGONAL_MAX_K`` members: one GEMM with the block-diagonal (K*O, K*I) weight
    (``BlockDiagonalLinear``). It does K times the multiply-adds, but the zeros add exactly nothing
    and the activations need no permute (a batched matmul over K would copy them to (K, ..., I) and
    back: the bigger cost on a GPU at these sizes). More members: the batched matmul. Either way a
    member's outputs and gradients depend on its own numbers only, non-finite ones included: a
    member whose activations become NaN or Inf (a diverged run) leaves the others' untouched.
    One member (a single run): its ``F.linear`` (W[0] of a ``unsqueeze`` is the weight itself).
    """
    K = W.shape[0]
    if K == 1:
        return F.linear(z, W[0], b[0])  # (... O)
    if K <= BLOCK_DIAGONAL_MAX_K:
        return BlockDiagonalLinear.apply(z, W, b)  # (... K*O)
    out = torch.einsum("...ki,koi->...ko", z.unflatten(-1, (K, -1)), W) + b  # (... K O)
    return out.flatten(-2)  # (... K*O)
