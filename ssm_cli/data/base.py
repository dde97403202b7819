"""The types every dataset returns: what the model needs to know about the data, and the splits."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # annotations only: the command line starts without importing torch
    from torch.utils.data import Dataset


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about a dataset.

    input: ``float`` items are ``x: (L, d_input) float32``; ``tokens`` items are ``x: (L,) int64``
    with ids in ``[0, vocab_size)`` (0 is padding). ``two_tower`` items stack two sequences:
    ``(2, L)`` tokens (LRA Retrieval). Targets ``y`` are int64 class ids (classification) or
    ``(n_targets,)`` float32 (regression).
    """

    name: str
    seq_len: int
    d_input: int
    d_output: int  # classes (classification) or regression targets
    input: Literal["float", "tokens"] = "float"
    vocab_size: int | None = None
    task: Literal["classification", "regression"] = "classification"
    metric: Literal["accuracy", "rmse"] = "accuracy"
    two_tower: bool = False


@dataclass
class DatasetBundle:
    """The three splits of a dataset plus extra evaluation views.

    extra_eval maps a metric prefix (e.g. ``"test_8k"``) to ``(dataset, rate)``: the view is
    evaluated with the model's rate set to ``rate`` (zero-shot resolution change).
    """

    spec: DataSpec
    train: Dataset
    val: Dataset
    test: Dataset
    extra_eval: dict[str, tuple[Dataset, float]] = field(default_factory=dict)
