"""From the flat ``model`` config to a ``SequenceModel``: backbone keys vs SSM-core keys.

Users write one flat group (``model.d_state=64 model.init=lin model.norm=batch``); keys listed in
``BACKBONE_KEYS`` go to the backbone, every other key is an option of the SSM core named by
``model.core`` and is checked by ``ssm_cli.layers.build``.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from ssm_cli.data.base import DataSpec
from ssm_cli.values import Range, check

# The valid values of the backbone's keys (ssm_cli.values); the cores' are registered with them (ssm_cli.layers.registry).
BACKBONE_VALID = {
    "d_model": Range(1, integer=True),
    "n_layers": Range(1, integer=True),
    "d_state": Range(1, integer=True),
    "norm": ("layer", "batch"),
    "prenorm": (True, False),
    "dropout": Range(0, 1, hi_open=True),
    "tie_dropout": (True, False),
    "final_act": ("identity", "gelu", "glu"),
    "pool": ("mean", "last"),
    "activation": ("gelu",),
    "dropout_sites": ("reference", "single"),
}
BACKBONE_KEYS = ("core", "d_model", "n_layers", "d_state", "norm", "prenorm", "dropout", "tie_dropout",
                 "dropout_sites", "activation", "final_act", "pool")


def split_model_config(model_cfg: DictConfig) -> tuple[dict, dict]:
    """(backbone kwargs, core options) from the flat model config."""
    d = OmegaConf.to_container(model_cfg, resolve=True)
    backbone = {k: d.pop(k) for k in BACKBONE_KEYS if k in d}
    return backbone, d


def check_model_config(model_cfg: DictConfig) -> None:
    """Raise UserError for an unknown core, core option or backbone value (before anything runs)."""
    from ssm_cli.layers.registry import build, with_seq_len

    backbone, core_options = split_model_config(model_cfg)
    for key, valid in BACKBONE_VALID.items():
        if key in backbone or key in ("d_model", "n_layers", "d_state"):
            check(f"model.{key}", backbone.get(key), valid)
    # Building one core runs exactly the checks the real model's will (unknown option, bad value);
    # a sequence length the core needs (the data's, unknown here) by a stand-in length.
    core_options = with_seq_len(backbone["core"], core_options, 16)
    build(backbone["core"], d_model=backbone["d_model"], d_state=backbone["d_state"], **core_options)


def build_model(model_cfg: DictConfig, spec: DataSpec, compiled: bool = False):
    """The network for a dataset: encoder from the data's input kind, decoder to its outputs.

    compiled: torch.compile of the blocks' real-valued tails and spectral products (a speed option, same numbers)."""
    from ssm_cli.layers import SequenceModel
    from ssm_cli.layers.registry import with_seq_len

    backbone, core_options = split_model_config(model_cfg)
    core_options = with_seq_len(backbone["core"], core_options, spec.seq_len)  # e.g. S4's l_max
    return SequenceModel(
        d_input=spec.d_input,
        d_output=spec.d_output,
        encoder="embedding" if spec.input == "tokens" else "linear",
        vocab_size=spec.vocab_size,
        two_tower=spec.two_tower,
        core_options=core_options,
        compiled=compiled,
        **backbone,
    )


def build_models(model_cfgs: list[DictConfig], spec: DataSpec, compiled: bool = False, seed: int | None = None):
    """One ``SequenceModel`` for one config; a ``PackedModel`` of K members for K configs.

    With ``seed``, ``torch.manual_seed(seed)`` runs before each member is built, so member k
    starts from the same weights as the run of ``model_cfgs[k]`` alone."""
    import torch

    from ssm_cli.layers.packed import PackedModel

    models = []
    for c in model_cfgs:
        if seed is not None:
            torch.manual_seed(seed)
        models.append(build_model(c, spec, compiled=compiled and len(model_cfgs) == 1))
    if len(models) == 1:
        return models[0]
    return PackedModel(models, compiled=compiled)
