"""The network around the SSM cores (docs/papers.md §2): encoder -> residual blocks -> pooling -> decoder.

Written once, over K members (``members_forward``): a ``SequenceModel`` is a pack of one, and a
``PackedModel`` runs K ``SequenceModel`` s side by side in one forward pass. Their activations
are concatenated along the features, (B, L, K*H), member-major, so each elementwise op, FFT
convolution and norm is one kernel over all K members and each per-member linear map one GEMM
(``blockdiag.packed_linear``); at the ablations' sizes (batch 50, H 128) one network leaves an
H100 mostly idle between small kernels. The parameters stay the members' own: a member's
``state_dict`` and optimizer groups are those of a run alone, and with losses summed each
member's gradient is that of its own loss (``tests/layers/test_layers_packed.py``), also when
another member diverges (``blockdiag``).

Cores: depthwise-convolution cores (``SSMCore.is_depthwise_conv``) of all members are convolved
in one FFT convolution of their kernels side by side (``base.conv_kernels``); any other core runs
its own ``forward`` on its member's slice. In post-norm blocks whose cores are all convolutions,
the block input's two gradients (through the core and through the residual) are summed in the
convolution's backward (``fftconv.conv(residual=True)``). ``compiled`` (GPU in practice):
torch.compile of each block's real-valued tail (``Block.post``) and of the FFT convolution's
spectral products; the same numbers.

Block, ``dropout_sites="reference"`` (the authors' training pipeline; docs/reference-parity.md):
    x -> [prenorm] -> core -> dropout(untied) -> activation -> dropout -> linear (+ final_act)
      -> dropout -> + x -> [postnorm]
``dropout_sites="single"`` keeps only the dropout after the activation (one mask per block):
    x -> [prenorm] -> core -> activation -> dropout -> linear (+ final_act) -> + x -> [postnorm]
Dropout is "tied" when ``tie_dropout``: one mask per (batch, feature), shared along the length.
The core's dropout is never tied (the reference's S4 block does not hand ``tie_dropout`` to its
convolution, whose dropout is then elementwise). With ``prenorm`` a final norm follows the last block.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError, check_choice
from .base import conv_kernels
from .blockdiag import packed_linear
from .fftconv import conv

ENCODERS = ("linear", "embedding")
NORMS = ("layer", "batch")
ACTIVATIONS = ("gelu", "relu", "silu", "identity")
FINAL_ACTS = ("identity", "gelu", "glu")
POOLS = ("mean", "last")
DROPOUT_SITES = ("reference", "single")
# post-norm blocks of convolution cores: the block input's gradients summed in the convolution's
# backward (fftconv.conv(residual=True)); False leaves the sum to autograd (same numbers, slower;
# benchmarks/pack_speed.py --residual compares the two)
FUSE_RESIDUAL = True


class TiedDropout(nn.Module):
    """Dropout with one mask per (batch, feature), broadcast over the length: x (B, L, H).

    The 1/(1-p) scale goes into the small (B, 1, H) mask first, so the full-size tensor sees one
    multiply forward and one backward (``x * mask / (1 - p)`` costs two passes each way).
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape[0], 1, x.shape[2], device=x.device) >= self.p  # (B 1 H) bool
        if x.dtype == torch.get_default_dtype():  # bool * float is already x's dtype: one kernel
            scale = keep * (1.0 / (1 - self.p))  # (B 1 H): 0 or 1/(1-p)
        else:  # e.g. float64: the scale in x's precision
            scale = keep.to(x.dtype) * (1.0 / (1 - self.p))  # (B 1 H)
        return x * scale  # (B L H)


class Norm(nn.Module):
    """LayerNorm or BatchNorm over the features H of x (B, L, H)."""

    def __init__(self, kind: str, d: int):
        super().__init__()
        self.kind = kind
        self.norm = nn.LayerNorm(d) if kind == "layer" else nn.BatchNorm1d(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layer":
            return self.norm(x)  # (B L H)
        return self.norm(x.transpose(1, 2)).transpose(1, 2)  # (B L H)


def make_dropout(p: float, tied: bool) -> nn.Module:
    """Tied (one mask per batch row and feature, ``TiedDropout``) or elementwise dropout."""
    return TiedDropout(p) if tied else nn.Dropout(p)


def dropout_modules(p: float, tie_dropout: bool, sites: str) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(core, activation, residual) dropouts of a block for ``sites`` in DROPOUT_SITES.

    reference: elementwise dropout on the core's output, then the activation's dropout and the
    residual branch's dropout (both tied with ``tie_dropout``); single: the activation's dropout
    only. Sites that are off (and the core and residual sites when p == 0) are ``nn.Identity``.
    """
    check_choice("dropout_sites", sites, DROPOUT_SITES)
    act = make_dropout(p, tie_dropout)
    if sites == "single" or p == 0:
        return nn.Identity(), act, nn.Identity()
    return make_dropout(p, False), act, make_dropout(p, tie_dropout)


def _activation(name: str) -> nn.Module:
    return {"gelu": nn.GELU(), "relu": nn.ReLU(), "silu": nn.SiLU(), "identity": nn.Identity()}[name]


class Block(nn.Module):
    """One residual block around an SSM core: the member's modules (core, norm, output linear)."""

    def __init__(self, d_model: int, core: nn.Module, *, norm: str, prenorm: bool, dropout: float,
                 tie_dropout: bool, activation: str, final_act: str, dropout_sites: str = "reference"):
        super().__init__()
        self.core, self.prenorm = core, prenorm
        self.norm = Norm(norm, d_model)
        self.act = _activation(activation)
        self.dropout_sites = dropout_sites
        self.core_drop, self.drop, self.res_drop = dropout_modules(dropout, tie_dropout, dropout_sites)
        self.glu = final_act == "glu"
        self.out = nn.Linear(core.d_output, 2 * d_model if self.glu else d_model)
        self.final_act = _activation("gelu" if final_act == "gelu" else "identity")
        self.layer_norm = norm == "layer" and not prenorm  # post-norm LayerNorm: inside ``post``
        self.mixer = bool(getattr(core, "mixer", False))
        if self.mixer:  # the core is the whole mixer (GSS): no activation or output linear after it
            self.act, self.out, self.glu, self.final_act = nn.Identity(), None, False, nn.Identity()

    def forward(self, x: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """This block alone: x (B, L, H) -> (B, L, H) (``block_forward`` of one member, eager)."""
        return block_forward([self], self.post, x, rate, compiled=False)

    def post(self, y: torch.Tensor, x: torch.Tensor, W: torch.Tensor, b: torch.Tensor,
             norm_w: torch.Tensor | None, norm_b: torch.Tensor | None) -> torch.Tensor:
        """Everything after the cores, for K members side by side (K = 1: a single run).

        y (B, L, K*C*H) the cores' outputs, x (B, L, K*H) the block inputs (member-major), the
        members' output linears W (K, O, C*H), b (K, O) and, for a post-norm LayerNorm, its
        weights and biases (K, H) -> (B, L, K*H). Dropout masks are drawn over all K*H features at
        once (each member its own); a post-norm BatchNorm is applied after this, member by member.
        """
        K = W.shape[0] if W is not None else 1  # K only shapes the GLU, which mixers do not have
        z = self.drop(self.act(self.core_drop(y)))  # (B L K*C*H)
        if W is not None:  # None: the cores are the mixers (``SSMCore.mixer``)
            z = packed_linear(z, W, b)  # (B L K*O)
        z = F.glu(z.unflatten(-1, (K, -1)), dim=-1).flatten(-2) if self.glu else self.final_act(z)  # (B L K*H)
        x = x + self.res_drop(z)  # (B L K*H)
        return layer_norm(x, norm_w, norm_b, self.norm.norm.eps) if self.layer_norm else x


def stack(ts: list[torch.Tensor]) -> torch.Tensor:
    """torch.stack, or for one tensor a view with a leading dimension of 1 (no copy)."""
    return ts[0].unsqueeze(0) if len(ts) == 1 else torch.stack(ts)


def cat(ts: list[torch.Tensor], dim: int) -> torch.Tensor:
    """torch.cat, or the one tensor itself (no copy)."""
    return ts[0] if len(ts) == 1 else torch.cat(ts, dim)


def layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """Member k's LayerNorm (weight w[k], bias b[k]; (K, H)) on its slice of x (..., K*H)."""
    K, H = w.shape
    if K == 1:
        return F.layer_norm(x, (H,), w[0], b[0], eps)  # (... H)
    return (F.layer_norm(x.unflatten(-1, (K, H)), (H,), eps=eps) * w + b).flatten(-2)  # (... K*H)


def member_norm(x: torch.Tensor, norms: list[Norm]) -> torch.Tensor:
    """Member k's ``Norm`` on its slice of x (B, L, K*H) -> (B, L, K*H)."""
    if len(norms) == 1:
        return norms[0](x)
    if norms[0].kind == "layer":
        return layer_norm(x, torch.stack([n.norm.weight for n in norms]), torch.stack([n.norm.bias for n in norms]),
                          norms[0].norm.eps)
    # BatchNorm keeps running statistics per member
    return torch.cat([n(p) for n, p in zip(norms, x.chunk(len(norms), dim=-1))], dim=-1)  # (B L K*H)


def core_outputs(cores: list, u: torch.Tensor, rate: float, residual: bool, compiled: bool):
    """(y, u'): the members' cores on their slices of u (B, L, K*H) -> y (B, L, K*C*H), member-major.

    u' is u; with ``residual`` (u is the block's residual stream) and all cores convolutions, the
    convolution's residual output (``fftconv.conv``), through which u's gradients are summed.
    """
    K, H = len(cores), cores[0].d_model
    B_, L = u.shape[:2]
    if all(c.is_depthwise_conv for c in cores):
        work = torch.float64 if u.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=u.device.type, enabled=False):  # kernel and FFT in float32 (docs/papers.md §7)
            k = conv_kernels(cores, L, rate).to(work)  # (C K*H L')
            D = cat([c.D.to(work) for c in cores], dim=1)  # (C K*H)
            if residual and u.dtype == work:  # (B L C*K*H), channel c*K*H + k*H + h
                y, u = conv(u, k, D, compiled=compiled, residual=True)
            else:
                y = conv(u.to(work), k, D, compiled=compiled).to(u.dtype)
        C = k.shape[0]
        if C > 1 and K > 1:  # member-major features: (B, L, K, C*H) as each member's output linear expects
            y = y.reshape(B_, L, C, K, H).transpose(2, 3).reshape(B_, L, -1)
        return y, u
    # mixed or non-convolution cores: the convolutions together, every other core on its slice
    us = u.split(H, dim=-1)  # K views (B L H)
    ys: list = [None] * K
    conv_ids = [i for i, c in enumerate(cores) if c.is_depthwise_conv]
    if conv_ids:
        yc, _ = core_outputs([cores[i] for i in conv_ids], cat([us[i] for i in conv_ids], -1), rate, False, compiled)
        for i, y_i in zip(conv_ids, yc.split(cores[conv_ids[0]].d_output, dim=-1)):
            ys[i] = y_i  # (B L C*H)
    for i, c in enumerate(cores):
        if ys[i] is None:
            ys[i] = c(us[i], rate=rate)  # (B L C*H)
    return cat(ys, -1), u


def block_forward(blocks: list[Block], post, x: torch.Tensor, rate: float, compiled: bool) -> torch.Tensor:
    """Layer i of K members: x (B, L, K*H) -> (B, L, K*H); ``post`` is blocks[0].post (or it compiled)."""
    b0 = blocks[0]
    norms = [b.norm for b in blocks]
    u = member_norm(x, norms) if b0.prenorm else x  # (B L K*H)
    y, r = core_outputs([b.core for b in blocks], u, rate, residual=FUSE_RESIDUAL and not b0.prenorm,
                        compiled=compiled)
    if not b0.prenorm:
        x = r  # the core's input was the residual stream
    W = bias = None  # a mixer core's output goes straight to the residual
    if not b0.mixer:
        W, bias = stack([b.out.weight for b in blocks]), stack([b.out.bias for b in blocks])  # (K O C*H), (K O)
    nw = nb = None
    if b0.layer_norm:
        nw, nb = stack([n.norm.weight for n in norms]), stack([n.norm.bias for n in norms])  # (K H)
    out = post(y, x, W, bias, nw, nb)  # (B L K*H)
    if not b0.prenorm and not b0.layer_norm:  # post-norm BatchNorm, member by member
        out = member_norm(out, norms)
    return out


def members_features(members: list, posts: list, x: torch.Tensor, rate: float, compiled: bool) -> torch.Tensor:
    """Pooled features (B, K, H) of K ``SequenceModel`` s for one tower, on a shared input x."""
    K, m0 = len(members), members[0]
    encs = [m.encoder for m in members]
    if isinstance(encs[0], nn.Embedding):
        h = cat([e(x) for e in encs], -1)  # (B L K*H)
    else:  # the input is shared: K encoders are one linear map to K*H features
        h = F.linear(x, cat([e.weight for e in encs], 0), cat([e.bias for e in encs], 0))  # (B L K*H)
    # float32 residual stream from the start (under autocast the linear gives bf16; the blocks
    # return float32): every block's compiled tail then sees one input signature
    h = h.to(torch.promote_types(h.dtype, torch.float32))
    for i, post in enumerate(posts):
        h = block_forward([m.blocks[i] for m in members], post, h, rate, compiled)  # (B L K*H)
    if m0.prenorm:
        h = member_norm(h, [m.final_norm for m in members])  # (B L K*H)
    h = h.unflatten(-1, (K, -1))  # (B L K H)
    return h.mean(1) if m0.pool == "mean" else h[:, -1]  # (B K H)


def members_forward(members: list, posts: list, x: torch.Tensor, rate: float, compiled: bool) -> torch.Tensor:
    """The network of K ``SequenceModel`` s on a shared input x -> logits (K, B, d_output)."""
    K, m0 = len(members), members[0]
    if m0.two_tower:
        B_ = x.shape[0]
        f = members_features(members, posts, x.flatten(0, 1), rate, compiled).unflatten(0, (B_, 2))  # (B 2 K H)
        a, b = f[:, 0], f[:, 1]  # (B K H): documents interleaved
        joint = torch.cat([a, b, a * b, a - b], -1)  # (B K 4H)
        return stack([m.decoder(joint[:, k]) for k, m in enumerate(members)])  # (K B O)
    f = members_features(members, posts, x, rate, compiled)  # (B K H)
    if K == 1:
        return m0.decoder(f[:, 0])[None]  # (1 B O)
    W, b = torch.stack([m.decoder.weight for m in members]), torch.stack([m.decoder.bias for m in members])
    return torch.einsum("bkh,koh->kbo", f, W) + b[:, None]  # (K B O)


class _Posts:
    """The blocks' ``post`` of a network: eager, each block's own; ``compiled``: the first block's
    torch.compile'd (made on first use) for every layer. The blocks of one network have the same
    tail (their parameters are arguments), so one compiled function serves all layers and the
    recompile limit is spent on input signatures only."""

    def __init__(self, compiled: bool):
        self.compiled, self._fn = compiled, None

    def __call__(self, blocks) -> list:
        if not self.compiled:
            return [b.post for b in blocks]
        if self._fn is None:
            self._fn = torch.compile(blocks[0].post, dynamic=False)
        return [self._fn] * len(blocks)

    def __deepcopy__(self, memo):
        return _Posts(self.compiled)


class SequenceModel(nn.Module):
    """Encoder -> n_layers residual SSM blocks -> pooling -> decoder.

    x: (B, L, d_input) float for ``encoder="linear"``; (B, L) int64 tokens for ``"embedding"``;
    (B, 2, L) int64 tokens with ``two_tower`` (LRA Retrieval: both documents go through the same
    encoder, the decoder sees [a, b, a*b, a-b] and is Linear(4H, H) -> GELU -> Linear(H, d_output)).
    Returns logits (B, d_output). ``rate`` scales every core's step (e.g. 2.0 for a signal sampled
    at half the training rate). ``core_options`` go to ``build`` (the core's registered options);
    an int ``seed`` there seeds layer i with seed + i. ``compiled`` (off by default, GPU only in
    practice): torch.compile of every block's real-valued tail (``Block.post``) and of the FFT
    convolution's spectral products. ``dropout_sites``: ``reference`` (three dropouts per block,
    as the authors' pipeline) or ``single`` (one; see the module docstring). The forward pass is
    that of a pack of one (``members_forward``).
    """

    def __init__(self, d_input: int, d_output: int, *, d_model: int = 128, n_layers: int = 4, core: str = "s4d",
                 core_options: dict | None = None, d_state: int = 64, encoder: str = "linear",
                 vocab_size: int | None = None, norm: str = "layer", prenorm: bool = False, dropout: float = 0.1,
                 tie_dropout: bool = True, activation: str = "gelu", final_act: str = "identity",
                 pool: str = "mean", two_tower: bool = False, dropout_sites: str = "reference",
                 compiled: bool = False):
        super().__init__()
        from .registry import build
        check_choice("encoder", encoder, ENCODERS)
        check_choice("norm", norm, NORMS)
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("final_act", final_act, FINAL_ACTS)
        check_choice("pool", pool, POOLS)
        check_choice("dropout_sites", dropout_sites, DROPOUT_SITES)
        # what members of one pack share: the backbone (the cores' shapes are checked per layer)
        self.config = dict(d_input=d_input, d_output=d_output, d_model=d_model, n_layers=n_layers,
                           encoder=encoder, vocab_size=vocab_size, norm=norm, prenorm=prenorm, dropout=dropout,
                           tie_dropout=tie_dropout, activation=activation, final_act=final_act, pool=pool,
                           two_tower=two_tower, dropout_sites=dropout_sites)
        if encoder == "embedding":
            if not vocab_size:
                raise UserError("encoder='embedding' needs vocab_size")
            self.encoder = nn.Embedding(vocab_size, d_model)
        else:
            self.encoder = nn.Linear(d_input, d_model)
        opts = dict(core_options or {})
        seed = opts.pop("seed", None)  # an int seed: layer i gets seed + i (identical layers otherwise)
        self.blocks = nn.ModuleList(
            Block(d_model, build(core, d_model, d_state, **opts, **({} if seed is None else {"seed": seed + i})),
                  norm=norm, prenorm=prenorm, dropout=dropout, tie_dropout=tie_dropout, activation=activation,
                  final_act=final_act, dropout_sites=dropout_sites)
            for i in range(n_layers))
        self.final_norm = Norm(norm, d_model) if prenorm else nn.Identity()
        self.prenorm, self.pool, self.two_tower = prenorm, pool, two_tower
        if two_tower:
            self.decoder = nn.Sequential(nn.Linear(4 * d_model, d_model), nn.GELU(), nn.Linear(d_model, d_output))
        else:
            self.decoder = nn.Linear(d_model, d_output)
        self.compiled = compiled
        self._posts = _Posts(compiled)

    def features(self, x: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """Pooled features (B, H) of one tower."""
        return members_features([self], self._posts(self.blocks), x, rate, self.compiled)[:, 0]  # (B H)

    def forward(self, x: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        return members_forward([self], self._posts(self.blocks), x, rate, self.compiled)[0]  # (B d_output)


def check_packable(members) -> None:
    """Raise UserError naming the first difference that keeps these models out of one pack."""
    if not members:
        raise UserError("a pack needs at least one model")
    ref = members[0]
    for i, m in enumerate(members[1:], start=1):
        for key, value in ref.config.items():
            if m.config[key] != value:
                raise UserError(f"models 0 and {i} cannot share a pack: {key} differs "
                                f"({value!r} vs {m.config[key]!r}); a pack needs the same backbone")
        for layer, (a, b) in enumerate(zip(ref.blocks, m.blocks)):
            for attr in ("d_model", "d_output", "bidirectional"):
                va, vb = getattr(a.core, attr), getattr(b.core, attr)
                if va != vb:
                    raise UserError(f"models 0 and {i} cannot share a pack: the cores' {attr} differs in "
                                    f"layer {layer} ({va!r} vs {vb!r})")


class PackedModel(nn.Module):
    """K ``SequenceModel`` s of one backbone run as one: x -> logits (K, B, d_output).

    ``members`` keep their parameters (``self.members[k]`` is a plain SequenceModel); the input
    batch is shared. The blocks' tails run as member 0's (``Block.post`` over K members; dropout
    masks drawn for all K*H features). ``compiled``: as for ``SequenceModel``.
    """

    def __init__(self, members, compiled: bool = False):
        super().__init__()
        check_packable(members)
        self.members = nn.ModuleList(members)
        self.K = len(members)
        self.compiled = compiled
        self._posts = _Posts(compiled)

    def features(self, x: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """Pooled features (B, K, H) of one tower."""
        return members_features(list(self.members), self._posts(self.members[0].blocks), x, rate, self.compiled)

    def forward(self, x: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        return members_forward(list(self.members), self._posts(self.members[0].blocks), x, rate, self.compiled)
