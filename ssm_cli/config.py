"""Compose, validate and hash run configs (Hydra's Compose API over ``conf/``).

Hydra's Compose API does no multirun and makes no output folders: ``ssm`` expands ablation grids
itself (``ssm_cli.train.grid``) and owns its run directories.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from ssm_cli.errors import UserError
from ssm_cli.values import AnyOf, ListOf, MappingOf, Range, Text, check

# The config tree ships inside the package (``ssm_cli/conf``, in the checkout a link to the
# repository's ``conf/``), so an installed wheel finds it from any directory; SSM_CONF overrides it.
CONF_DIR = Path(os.environ.get("SSM_CONF", Path(__file__).resolve().parent / "conf"))

# Keys that describe where/how a run executes, not what it computes: left out of the config hash.
HASH_EXCLUDED = ("out_dir", "data_dir", "seeds", "launcher", "ablation", "name", "run",
                 "trainer.progress", "trainer.num_workers", "trainer.data_on_device",
                 "trainer.cuda_graphs", "trainer.eval_batch_size", "trainer.compile",
                 "trainer.test_at",  # when the test sets are evaluated, not what the test metric is
                 "trainer.logger", "trainer.log_every_n_steps", "trainer.wandb_project")  # logs, not results

# The valid values of every key outside the model (the model's: ssm_cli.model.BACKBONE_VALID
# and ssm_cli.layers.registry.CORE_OPTIONS (each core's module)), checked before anything runs: a tuple lists the values,
# a Range bounds a number (ssm_cli.values). A key a config does not have (e.g. scheduler.gamma
# without scheduler=step) is not checked.
_POSITIVE_INT = Range(1, integer=True)
_BATCHES = AnyOf((Range(1, integer=True), Range(0, 1, lo_open=True), (None,)))  # count, fraction, all
VALID = {
    "seeds": AnyOf((ListOf(Range(0, 2**32 - 1, integer=True), min_length=1, unique=True), (None,))),
    "trainer.epochs": _POSITIVE_INT,
    "trainer.batch_size": _POSITIVE_INT,
    "trainer.eval_batch_size": Range(1, integer=True, none=True),
    "trainer.accelerator": ("auto", "cpu", "gpu", "cuda"),
    "trainer.devices": _POSITIVE_INT,
    "trainer.precision": ("32-true", "32", "bf16-mixed", "16-mixed"),
    "trainer.grad_clip": Range(0),
    "trainer.num_workers": Range(0, integer=True),
    "trainer.data_on_device": ("auto", True, False),
    "trainer.limit_train_batches": _BATCHES,
    "trainer.limit_eval_batches": _BATCHES,
    "trainer.progress": (True, False),
    "trainer.cuda_graphs": (True, False),
    "trainer.compile": ("auto", True, False),
    "trainer.matmul_precision": ("highest", "high", "medium"),
    "trainer.test_at": ("best", "every"),
    "trainer.deterministic": (True, False),
    "trainer.logger": ("none", "csv", "tensorboard", "wandb"),  # ssm_cli/train/loggers.py
    "trainer.log_every_n_steps": _POSITIVE_INT,
    "trainer.wandb_project": Text(),
    "optimizer.name": ("adamw",),
    "optimizer.lr": Range(0, lo_open=True),
    "optimizer.weight_decay": Range(0),
    "optimizer.betas": ListOf(Range(0, 1, hi_open=True), length=2),
    "optimizer.bias_norm_weight_decay": (True, False),
    "scheduler.name": ("cosine", "step", "constant"),
    "scheduler.warmup_steps": Range(0, integer=True),
    "scheduler.milestones": ListOf(_POSITIVE_INT),
    "scheduler.gamma": Range(0, lo_open=True),
    "launcher.name": ("serial", "local", "submitit_local", "slurm"),
    "launcher.jobs": _POSITIVE_INT,
    "launcher.pack": AnyOf((_POSITIVE_INT, ("auto",))),  # auto: ssm_cli/train/pack_size.py
    # launcher=slurm and launcher=submitit_local (ssm_cli/launch/submit.py)
    "launcher.partition": Text(none=True),
    "launcher.time_min": _POSITIVE_INT,
    "launcher.gpus_per_job": Range(0, integer=True),
    "launcher.cpus_per_job": _POSITIVE_INT,
    "launcher.mem_gb_per_job": Range(1, integer=True, none=True),
    "launcher.array_parallelism": _POSITIVE_INT,
    "launcher.account": Text(none=True),
    "launcher.qos": Text(none=True),
    "launcher.sbatch_extra": AnyOf((MappingOf(AnyOf((Range(), Text(), (True, False)))), (None,))),
    "launcher.setup": ListOf(Text()),
    "launcher.folder": Text(),
    "launcher.wait": (True, False),
    "launcher.poll_s": Range(0, lo_open=True),
    "ablation.noise_amplitude": Range(0),            # conf/ablation/ptd.yaml: 0 = no noisy test view
    "ablation.noise_omega": Range(0, lo_open=True),
    "ablation.noise_omegas": AnyOf((ListOf(Range(0, lo_open=True)), (None,))),
}


def group_options(group: str) -> list[str]:
    """The option names of a config group (the yaml files of ``conf/<group>/``)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _compose(overrides: list[str]) -> DictConfig:
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=list(overrides))
    except MissingConfigException as e:
        raise UserError(str(e).split("Config search path")[0].strip()) from None
    except OverrideParseException as e:
        raise UserError(f"cannot parse override: {str(e).strip()}") from None
    except (ConfigCompositionException, HydraException) as e:
        raise UserError(_explain_composition_error(e, overrides)) from None


def _explain_composition_error(e: Exception, overrides: list[str]) -> str:
    """Turn Hydra's 'Could not override' into 'unknown key ...; valid keys of <node>: ...'."""
    msg = str(e).strip()
    cause = str(e.__cause__ or "")
    if "Could not override" in msg or "not in struct" in cause:
        key = msg.split("'")[1] if "'" in msg else ""
        parent, _, leaf = key.rpartition(".")
        try:
            base = _compose([o for o in overrides if not o.split("=")[0].lstrip("+~") == key])
            node = OmegaConf.select(base, parent) if parent else base
            valid = ", ".join(sorted(node.keys())) if isinstance(node, DictConfig) else "(none)"
        except UserError:
            valid = "(could not compose the config without this override)"
        where = parent or "the top level"
        return f"unknown key {key!r}: {where} has no key {leaf!r}; valid keys of {where}: {valid}"
    return f"{msg}{': ' + cause if cause else ''}"


def compose(overrides: list[str], guess: list[str] | None = None) -> DictConfig:
    """Compose the config for ``overrides`` (Hydra syntax), applying the dataset's protocol.

    With ``preset=paper|short`` the authors' protocol for the chosen dataset
    (``conf/protocol/<dataset>.yaml``) is selected; ``short`` also sets 10 epochs. The user's own
    overrides still win over both.

    That takes two compositions: one to learn the preset and the dataset, one with what they add
    (``preset_overrides``). ``guess``, what they add to a related config (a grid's base config,
    for its variants), saves the first: the config is composed once with the guess and kept if it
    asks for exactly the guess. The protocol files set neither ``preset`` nor ``dataset``
    (``tests/runner/test_runner_compose_once.py``), so the preset and dataset seen there are those
    of the first composition, and the config is the one the two compositions give. A wrong guess
    costs one composition more.
    """
    overrides = list(overrides)
    if guess is not None:
        try:
            cfg = _compose(list(guess) + overrides)
            if preset_overrides(cfg, overrides) == list(guess):
                validate(cfg)
                return cfg
        except UserError:  # e.g. the guess does not fit a variant's own dataset or preset:
            pass  # the two compositions below report what is wrong, if anything is
    cfg = _compose(overrides)
    extra = preset_overrides(cfg, overrides)
    if extra:
        cfg = _compose(extra + overrides)
    validate(cfg)
    return cfg


def preset_overrides(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """The overrides that ``cfg``'s preset puts before the user's ``overrides`` (``cfg`` is their
    composition): ``protocol=<dataset>`` unless ``overrides`` choose a protocol, and the preset's
    ``trainer.epochs``. Nothing for a preset without a protocol (``smoke``, ``cpu``)."""
    if not cfg.preset.get("protocol"):
        return []
    extra: list[str] = []
    if not any(o.split("=")[0] == "protocol" for o in overrides):
        name = cfg.dataset.name
        if name not in group_options("protocol"):
            raise UserError(f"preset={cfg.preset.name} needs the authors' protocol for dataset {name!r}, "
                            f"but none exists; datasets with a protocol: {', '.join(group_options('protocol'))}")
        extra.append(f"protocol={name}")
    if cfg.preset.get("epochs"):
        extra.append(f"trainer.epochs={cfg.preset.epochs}")
    return extra


def validate(cfg: DictConfig) -> None:
    """Check every value that has a fixed set of valid values; raise UserError listing them."""
    from ssm_cli.data.registry import DATASETS
    from ssm_cli.model import check_model_config

    _check_interpolations(cfg)
    if cfg.dataset.name not in DATASETS:
        raise UserError(f"unknown dataset {cfg.dataset.name!r}; valid: {', '.join(DATASETS)}")
    absent = object()
    for key, valid in VALID.items():
        value = OmegaConf.select(cfg, key, default=absent)
        if value is not absent:
            check(key, OmegaConf.to_container(value) if OmegaConf.is_config(value) else value, valid)
    check_model_config(cfg.model)
    _check_logger_installed(cfg.trainer.get("logger", "none"))


def _check_logger_installed(name: str) -> None:
    """trainer.logger=tensorboard|wandb needs its optional package (the extras of the same names)."""
    import importlib.util

    if name in ("tensorboard", "wandb") and importlib.util.find_spec(name) is None:
        raise UserError(f"trainer.logger={name} needs the {name} package: pip install 'ssm-cli[{name}]' "
                        f"(or choose trainer.logger=csv|none)")


def _check_interpolations(cfg: DictConfig) -> None:
    """Raise UserError naming the first key whose ``${...}`` cannot be resolved."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "a key"
        reason = str(e).splitlines()[0]
        raise UserError(f"cannot resolve the value of {key}: {reason}") from None


def config_hash(cfg: DictConfig) -> str:
    """8 hex digits identifying what a run computes, except its seed: the seed lives in ``run``
    (left out, as paths and the launcher are), so the seeds of one configuration share the hash
    (the run directory ``seed<seed>-<hash>`` adds the seed) and ``ssm table`` averages exactly them."""
    data = OmegaConf.to_container(cfg, resolve=True)
    for key in HASH_EXCLUDED:
        parts = key.split(".")
        d = data
        for p in parts[:-1]:
            d = d.get(p, {}) if isinstance(d, dict) else {}
        if isinstance(d, dict):
            d.pop(parts[-1], None)
    blob = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]
