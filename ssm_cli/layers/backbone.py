"""The network around the SSM cores (FACTS §2): encoder -> residual blocks -> pooling -> decoder.

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

ENCODERS = ("linear", "embedding")
NORMS = ("layer", "batch")
ACTIVATIONS = ("gelu", "relu", "silu", "identity")
FINAL_ACTS = ("identity", "gelu", "glu")
POOLS = ("mean", "last")
DROPOUT_SITES = ("reference", "single")


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
    """One residual block around an SSM core; x (B, L, H) -> (B, L, H)."""

    fuse_residual = True  # post-norm: x's gradient through the core and the residual summed in one pass

    def __init__(self, d_model: int, core: nn.Module, *, norm: str, prenorm: bool, dropout: float,
                 tie_dropout: bool, activation: str, final_act: str, dropout_sites: str = "reference",
                 compile_post: bool = False):
        super().__init__()
        self.core, self.prenorm = core, prenorm
        self.norm = Norm(norm, d_model)
        self.act = _activation(activation)
        self.dropout_sites = dropout_sites
        self.core_drop, self.drop, self.res_drop = dropout_modules(dropout, tie_dropout, dropout_sites)
        d_core = core.channels * d_model
        self.glu = final_act == "glu"
        self.out = nn.Linear(d_core, 2 * d_model if self.glu else d_model)
        self.final_act = _activation("gelu" if final_act == "gelu" else "identity")
        if getattr(core, "mixer", False):  # the core is the whole mixer (GSS): no activation or linear after it
            self.act, self.out, self.glu, self.final_act = nn.Identity(), nn.Identity(), False, nn.Identity()
        # opt-in: torch.compile the real-valued elementwise/GEMM tail (activation, dropout, linear,
        # residual, norm), where fusion saves full passes, and the core's spectral products (as real
        # arithmetic); the FFTs and the kernel stay eager.
        self.compile_post = compile_post
        core.compile_spectra = compile_post  # and the FFT convolution's spectral products (fftconv.conv)
        self._post_compiled = torch.compile(self.post, dynamic=False) if compile_post else None

    def post(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Everything after the core: y (B, L, C*H) core output, x (B, L, H) block input -> (B, L, H)."""
        z = self.drop(self.act(self.core_drop(y)))  # (B L C*H)
        z = self.out(z)  # (B L H) or (B L 2H)
        z = F.glu(z, dim=-1) if self.glu else self.final_act(z)  # (B L H)
        x = x + self.res_drop(z)  # (B L H)
        return x if self.prenorm else self.norm(x)

    def forward(self, x: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        if self.prenorm or not self.fuse_residual:
            y = self.core(self.norm(x) if self.prenorm else x, rate=rate)  # (B L C*H)
        else:  # the core's input is the residual: x's two gradients are summed in the core's backward
            y, x = self.core(x, rate=rate, residual=True)  # (B L C*H), (B L H)
        return (self._post_compiled or self.post)(y, x)  # (B L H)


class SequenceModel(nn.Module):
    """Encoder -> n_layers residual SSM blocks -> pooling -> decoder.

    x: (B, L, d_input) float for ``encoder="linear"``; (B, L) int64 tokens for ``"embedding"``;
    (B, 2, L) int64 tokens with ``two_tower`` (LRA Retrieval: both documents go through the same
    encoder, the decoder sees [a, b, a*b, a-b] and is Linear(4H, H) -> GELU -> Linear(H, d_output)).
    Returns logits (B, d_output). ``rate`` scales every core's step (e.g. 2.0 for a signal sampled
    at half the training rate). ``core_options`` go to ``build`` (see CORE_OPTIONS); an int
    ``seed`` there seeds layer i with seed + i. ``compile_post`` (off by default, GPU only in
    practice): torch.compile the real-valued tail of every block (see ``Block.post``) and the
    spectral products of its FFT convolution (``fftconv.conv(compiled=True)``). ``dropout_sites``:
    ``reference`` (three dropouts per block, as the authors' pipeline) or ``single`` (one; see the
    module docstring).
    """

    def __init__(self, d_input: int, d_output: int, *, d_model: int = 128, n_layers: int = 4, core: str = "s4d",
                 core_options: dict | None = None, d_state: int = 64, encoder: str = "linear",
                 vocab_size: int | None = None, norm: str = "layer", prenorm: bool = False, dropout: float = 0.1,
                 tie_dropout: bool = True, activation: str = "gelu", final_act: str = "identity",
                 pool: str = "mean", two_tower: bool = False, dropout_sites: str = "reference",
                 compile_post: bool = False):
        super().__init__()
        from . import build
        check_choice("encoder", encoder, ENCODERS)
        check_choice("norm", norm, NORMS)
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("final_act", final_act, FINAL_ACTS)
        check_choice("pool", pool, POOLS)
        check_choice("dropout_sites", dropout_sites, DROPOUT_SITES)
        if encoder == "embedding":
            if not vocab_size:
                raise UserError("encoder='embedding' needs vocab_size")
            self.encoder = nn.Embedding(vocab_size, d_model)
        else:
            self.encoder = nn.Linear(d_input, d_model)
        opts = dict(core_options or {})
        seed = opts.pop("seed", None)  # an int seed: layer i gets seed + i (identical layers otherwise)
        self.blocks = nn.ModuleList(
            Block(d_model, build(core, d_model, d_state, seed=None if seed is None else seed + i, **opts),
                  norm=norm, prenorm=prenorm, dropout=dropout, tie_dropout=tie_dropout, activation=activation,
                  final_act=final_act, dropout_sites=dropout_sites, compile_post=compile_post)
            for i in range(n_layers))
        self.final_norm = Norm(norm, d_model) if prenorm else nn.Identity()
        self.pool, self.two_tower = pool, two_tower
        if two_tower:
            self.decoder = nn.Sequential(nn.Linear(4 * d_model, d_model), nn.GELU(), nn.Linear(d_model, d_output))
        else:
            self.decoder = nn.Linear(d_model, d_output)

    def features(self, x: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """Pooled features (B, H) of one tower."""
        h = self.encoder(x)  # (B L H)
        for block in self.blocks:
            h = block(h, rate=rate)  # (B L H)
        h = self.final_norm(h)  # (B L H)
        return h.mean(1) if self.pool == "mean" else h[:, -1]  # (B H)

    def forward(self, x: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        if self.two_tower:
            B = x.shape[0]
            f = self.features(x.flatten(0, 1), rate).reshape(B, 2, -1)  # (B 2 H): documents interleaved
            a, b = f[:, 0], f[:, 1]  # (B H) each
            return self.decoder(torch.cat([a, b, a * b, a - b], -1))  # (B d_output)
        return self.decoder(self.features(x, rate))  # (B d_output)
