"""K networks of the same shape trained as one wide network: a *pack* of runs on one GPU.

At the sizes of the ablations (batch 50, H 128) one network leaves an H100 mostly idle between
small kernels, and K processes sharing a GPU only time-slice it. ``PackedModel`` runs K
``SequenceModel`` s side by side in one forward pass: their activations are concatenated along
the features, (B, L, K*H), so each elementwise op, FFT convolution and norm is one kernel over
all K members, and each per-member linear map is one GEMM (``packed_linear``).

The members stay ordinary ``SequenceModel`` s (``self.members``): the parameters are theirs, so a
member's ``state_dict`` and optimizer groups are exactly those of a run of its own. Every member
computes its own SSM kernel (cores may differ in init, discretisation, transforms, even class);
the kernels are concatenated and convolved in one FFT convolution. The members never mix: with
losses summed, each member's gradient is the gradient of its own loss
(``tests/layers/test_layers_packed.py`` checks outputs and gradients against the members run one
by one). Not even through NaN or Inf: a member that diverges (its activations or gradients not
finite) leaves the others' outputs and gradients exactly as they are beside a finite member, and
its own loss stays non-finite, so its divergence is seen (``BlockDiagonalLinear``: the one place
where members meet in one GEMM, where NaN * 0 = NaN would otherwise spread it).

Members must agree on the backbone (encoder kind, H, layers, norm, prenorm, dropout, activation,
final_act, pool, two_tower, decoder sizes) and on the cores' ``channels`` and ``bidirectional``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError
from .backbone import SequenceModel, TiedDropout, dropout_modules
from .fftconv import conv


def _signature(model: SequenceModel) -> dict:
    """What members of a pack must share (the shape of the computation outside the SSM kernels)."""
    b0 = model.blocks[0]
    return {
        "encoder": type(model.encoder).__name__, "encoder_shape": tuple(model.encoder.weight.shape),
        "n_layers": len(model.blocks), "d_model": b0.core.d_model, "channels": b0.core.channels,
        "bidirectional": b0.core.bidirectional, "norm": b0.norm.kind, "prenorm": b0.prenorm,
        "dropout": (type(b0.drop).__name__, b0.drop.p), "dropout_sites": b0.dropout_sites,
        "activation": type(b0.act).__name__,
        "final_act": ("glu" if b0.glu else type(b0.final_act).__name__), "pool": model.pool,
        "two_tower": model.two_tower, "decoder": [tuple(p.shape) for p in model.decoder.parameters()],
        "cores": [(b.core.d_model, b.core.channels, b.core.bidirectional) for b in model.blocks],
    }


def check_packable(members: Sequence[SequenceModel]) -> None:
    """Raise UserError naming the first difference that keeps these models out of one pack."""
    if not members:
        raise UserError("a pack needs at least one model")
    ref = _signature(members[0])
    for i, m in enumerate(members[1:], start=1):
        sig = _signature(m)
        for key, value in ref.items():
            if sig[key] != value:
                raise UserError(f"models 0 and {i} cannot share a pack: {key} differs "
                                f"({value!r} vs {sig[key]!r}); a pack needs the same backbone and core shape")


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
    """
    K = W.shape[0]
    if K <= BLOCK_DIAGONAL_MAX_K:
        return BlockDiagonalLinear.apply(z, W, b)  # (... K*O)
    out = torch.einsum("...ki,koi->...ko", z.unflatten(-1, (K, -1)), W) + b  # (... K O)
    return out.flatten(-2)  # (... K*O)


class PackedTail(nn.Module):
    """Everything of a block after the SSM convolution, for K members at once (no parameters of its own).

    y (B, L, K*C*H) core outputs, x (B, L, K*H) block inputs, the members' output-linear weights
    W (K, O, C*H) and biases (K, O), their LayerNorm weights/biases (K, H) -> (B, L, K*H).
    The same ops as ``Block.post``: the core's dropout, activation, dropout, linear, GLU/final
    activation, the residual branch's dropout, residual, post-norm (LayerNorm here; BatchNorm is
    applied by the caller, member by member). Dropout masks are drawn over all K*H features at
    once: each member gets its own masks, of the same kind and at the same sites as its block's.
    """

    def __init__(self, block, K: int):
        super().__init__()
        self.K, self.H = K, block.core.d_model
        self.act = block.act
        self.core_drop, self.drop, self.res_drop = dropout_modules(
            block.drop.p, isinstance(block.drop, TiedDropout), block.dropout_sites)
        self.glu, self.final_act = block.glu, block.final_act
        self.layer_norm = block.norm.kind == "layer" and not block.prenorm
        self.eps = block.norm.norm.eps if block.norm.kind == "layer" else None

    def forward(self, y, x, W, b, norm_w, norm_b):
        B_, L = x.shape[:2]
        z = self.drop(self.act(self.core_drop(y)))  # (B L K*C*H)
        z = packed_linear(z, W, b).reshape(B_, L, self.K, -1)  # (B L K O)
        z = F.glu(z, dim=-1) if self.glu else self.final_act(z)  # (B L K H)
        z = self.res_drop(z.reshape(B_, L, self.K * self.H)).reshape(B_, L, self.K, self.H)  # (B L K H)
        x = x.reshape(B_, L, self.K, self.H) + z  # (B L K H)
        if self.layer_norm:
            x = F.layer_norm(x, (self.H,), eps=self.eps) * norm_w + norm_b  # (B L K H)
        return x.reshape(B_, L, self.K * self.H)  # (B L K*H)


class PackedModel(nn.Module):
    """K ``SequenceModel`` s of the same shape, run as one: x -> logits (K, B, d_output).

    ``members`` keep their parameters (``self.members[k]`` is a plain SequenceModel); the input
    batch is shared. ``compile_post``: torch.compile the packed block tail and the FFT convolution's
    spectral products (GPU; ``fftconv.conv(compiled=True)``).
    """

    fuse_residual = True  # post-norm: x's gradient through the conv and the residual summed in one pass

    def __init__(self, members: Sequence[SequenceModel], compile_post: bool = False):
        super().__init__()
        check_packable(members)
        self.members = nn.ModuleList(members)
        self.K = len(members)
        ref = members[0]
        self.H = ref.blocks[0].core.d_model
        self.n_layers = len(ref.blocks)
        self.prenorm, self.norm_kind = ref.blocks[0].prenorm, ref.blocks[0].norm.kind
        self.pool, self.two_tower = ref.pool, ref.two_tower
        self.tail = PackedTail(ref.blocks[0], self.K)
        # a compiled function, not a module: no second copy of the tail in the module tree
        self._tail = torch.compile(self.tail.forward, dynamic=False) if compile_post else self.tail
        self.compile_spectra = compile_post

    # ---- pieces -------------------------------------------------------------------------------
    def _stack(self, get) -> torch.Tensor:
        return torch.stack([get(m) for m in self.members])

    def _norm(self, x: torch.Tensor, norms: list) -> torch.Tensor:
        """Member k's Norm on its slice of x (B, L, K*H) -> (B, L, K*H)."""
        B_, L = x.shape[:2]
        if self.norm_kind == "layer":
            w = torch.stack([n.norm.weight for n in norms])  # (K H)
            b = torch.stack([n.norm.bias for n in norms])  # (K H)
            x = F.layer_norm(x.reshape(B_, L, self.K, self.H), (self.H,), eps=norms[0].norm.eps) * w + b
            return x.reshape(B_, L, -1)
        parts = x.reshape(B_, L, self.K, self.H).unbind(2)  # BatchNorm keeps running stats per member
        return torch.cat([n(p) for n, p in zip(norms, parts)], dim=-1)  # (B L K*H)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.members[0].encoder, nn.Embedding):
            h = torch.stack([m.encoder(x) for m in self.members], dim=-2)  # (B L K H)
        else:
            # the input is shared: K encoders are one linear map to K*H features
            W = torch.cat([m.encoder.weight for m in self.members])  # (K*H d_in)
            h = F.linear(x, W, torch.cat([m.encoder.bias for m in self.members]))  # (B L K*H)
        # float32 residual stream from the start (under autocast the linear gives bf16; the blocks
        # return float32): every block's compiled tail then sees one input signature
        return h.reshape(*h.shape[:2], -1).to(torch.promote_types(h.dtype, torch.float32))  # (B L K*H)

    @staticmethod
    def _kernels(cores: list, L: int, rate: float) -> torch.Tensor:
        """The members' convolution kernels side by side (C, K*H, L'); cores of one ``kernel_kind``
        (e.g. S4D cores that differ only in init) are computed together in one pass."""
        from .cores.s4d import packed_conv_kernel

        runs: list[list] = []  # maximal runs of consecutive cores of one kind, in member order
        for c in cores:
            kind = c.kernel_kind() if hasattr(c, "kernel_kind") else None
            if runs and kind is not None and runs[-1][0] == kind:
                runs[-1][1].append(c)
            else:
                runs.append([kind, [c]])
        parts = [packed_conv_kernel(cs, L, rate) if kind is not None and len(cs) > 1 else cs[0].conv_kernel(L, rate=rate)
                 for kind, cs in runs]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def _block(self, i: int, x: torch.Tensor, rate: float) -> torch.Tensor:
        blocks = [m.blocks[i] for m in self.members]
        B_, L = x.shape[:2]
        z = self._norm(x, [b.norm for b in blocks]) if self.prenorm else x  # (B L K*H)
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=x.device.type, enabled=False):  # kernel and FFT in float32 (FACTS §8)
            k = self._kernels([b.core for b in blocks], L, rate).to(work)  # (C K*H L')
            D = torch.cat([b.core.D.to(work) for b in blocks], dim=1)  # (C K*H)
            if self.prenorm or x.dtype != work or not self.fuse_residual:  # (B L C*K*H), channel c*K*H + k*H + h
                y = conv(z.to(work), k, D, compiled=self.compile_spectra).to(x.dtype)
            else:  # the conv's input is the residual: x's two gradients are summed in the conv's backward
                y, x = conv(x, k, D, compiled=self.compile_spectra, residual=True)
        C = k.shape[0]
        if C > 1:  # member-major features: (B, L, K, C*H) as each member's output linear expects
            y = y.reshape(B_, L, C, self.K, self.H).transpose(2, 3).reshape(B_, L, -1)
        W = torch.stack([b.out.weight for b in blocks])  # (K O C*H)
        bias = torch.stack([b.out.bias for b in blocks])  # (K O)
        if self.tail.layer_norm:
            nw = torch.stack([b.norm.norm.weight for b in blocks])  # (K H)
            nb = torch.stack([b.norm.norm.bias for b in blocks])  # (K H)
        else:
            nw = nb = None
        out = self._tail(y, x, W, bias, nw, nb)  # (B L K*H)
        if not self.prenorm and not self.tail.layer_norm:  # post-norm BatchNorm, member by member
            out = self._norm(out, [b.norm for b in blocks])
        return out

    # ---- the network ----------------------------------------------------------------------------
    def features(self, x: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """Pooled features (B, K, H) of one tower."""
        h = self._encode(x)  # (B L K*H)
        for i in range(self.n_layers):
            h = self._block(i, h, rate)  # (B L K*H)
        if self.prenorm:
            h = self._norm(h, [m.final_norm for m in self.members])  # (B L K*H)
        B_, L = h.shape[:2]
        h = h.reshape(B_, L, self.K, self.H)  # (B L K H)
        return h.mean(1) if self.pool == "mean" else h[:, -1]  # (B K H)

    def forward(self, x: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        if self.two_tower:
            B_ = x.shape[0]
            f = self.features(x.flatten(0, 1), rate).reshape(B_, 2, self.K, self.H)  # (B 2 K H)
            a, b = f[:, 0], f[:, 1]  # (B K H)
            joint = torch.cat([a, b, a * b, a - b], -1)  # (B K 4H)
            return torch.stack([m.decoder(joint[:, k]) for k, m in enumerate(self.members)])  # (K B O)
        f = self.features(x, rate)  # (B K H)
        W = self._stack(lambda m: m.decoder.weight)  # (K O H)
        return torch.einsum("bkh,koh->kbo", f, W) + self._stack(lambda m: m.decoder.bias)[:, None]  # (K B O)
