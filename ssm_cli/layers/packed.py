"""K networks of one backbone trained as one wide network: a *pack* of runs on one GPU.

The pack is the backbone itself written over K members (``backbone.members_forward``; a single
run is a pack of one); ``PackedModel`` holds the members. Per-member linear maps and their
NaN/Inf isolation: ``blockdiag``.
"""
from __future__ import annotations

from .backbone import PackedModel, check_packable
from .blockdiag import packed_linear

__all__ = ["PackedModel", "check_packable", "packed_linear"]
