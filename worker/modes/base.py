"""What every training mode shares: the images it gets, how it reports, what it returns,
and the registry that maps a run's mode to its strategy.

A mode is a function ``(examples, options, reporter, context) -> Outcome`` registered with
:func:`register_mode`; adding one is one new file in this folder and one registration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from backend.config import Settings
from backend.inference.preprocess import Preprocess
from backend.runs.models import RunMode
from backend.runs.schemas import (
    AutoDecision,
    EpochRecord,
    Evaluation,
    RunMetrics,
    RunOptions,
    WeightsUsed,
)
from worker.ml.errors import MLError
from worker.ml.evaluate import compute_metrics

if TYPE_CHECKING:
    from torch import nn

    from worker.ml.ensemble import Ensemble
    from worker.ml.heads import TrainedHead
    from worker.ml.precision import RuntimeChoice
    from worker.ml.weights import WeightsInfo


@dataclass(frozen=True)
class Example:
    """One labelled image of the run, with the split it belongs to."""

    image_id: int
    sha256: str
    path: Path
    filename: str
    label: str
    split: str
    label_id: int | None = None  # the label's row: a rename after training keeps its id


class Reporter(Protocol):
    """How a mode tells the run's row where it is, and learns that it should stop."""

    def stage(
        self,
        name: str,
        progress: float,
        *,
        images_total: int | None = None,
        unit: str = "images",
        detail: str | None = None,
    ) -> None:
        """A stage starts at ``progress`` (0-1 of the run); ``images_total`` resets counts of
        ``unit`` ("images" or "steps"); ``detail`` names what it works on (the backbone)."""

    def items(
        self,
        done: int,
        total: int,
        lo: float,
        hi: float,
        *,
        force: bool = False,
        detail: str | None = None,
    ) -> None:
        """``done`` of ``total`` items, mapped onto [lo, hi] of the run (throttled);
        ``detail`` updates what the stage works on ("epoch 2 of 5")."""

    def record_history(self, history: list[EpochRecord]) -> None:
        """The training curves so far."""

    def should_stop(self) -> bool:
        """Whether cancel was asked (checked between batches)."""

    def check_cancel(self) -> None:
        """Raise Cancelled if cancel was asked."""


@dataclass(frozen=True)
class ModeContext:
    """What a mode needs besides images and options: the backbone asked for, the settings,
    and whether the backbone starts from pretrained weights (every step uses the same).
    ``runtimes`` holds the CPU path each backbone's training images took in this run, chosen
    once per run (worker/modes/embeddings.py); ``checks`` the measurements of those paths
    this run makes on its images once it has succeeded (its result does not wait for them)."""

    backbone: str
    settings: Settings
    pretrained: bool = True
    runtimes: dict[str, RuntimeChoice] = field(default_factory=dict)
    checks: dict[str, Callable[[], RuntimeChoice | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What a mode hands back: a classifier ready to export and its scores."""

    labels: list[str]
    val_examples: list[Example]
    val_proba: np.ndarray  # (n_val, C), columns in ``labels`` order
    metrics: RunMetrics
    # Builds the image -> probabilities network; called only when a format needs it, so a
    # linear run never loads the torch backbone to succeed.
    build_model: Callable[[], nn.Module]
    preprocess: Preprocess
    backbone: str
    weights: WeightsUsed
    history: list[EpochRecord] | None = None
    decision: AutoDecision | None = None
    # Linear runs: the head and the cached feature graph let export skip a fresh backbone
    # export (see export.compose_classifier_onnx).
    head: TrainedHead | None = None
    feature_onnx: Path | None = None
    # Auto's combined probe: the ensemble and, per backbone it runs (in its order), the
    # preprocessing and the cached feature graph (if one exists) that export composes.
    ensemble: Ensemble | None = None
    ensemble_inputs: list[tuple[str, Preprocess, Path | None]] | None = None

    @property
    def backbones(self) -> list[str]:
        """Every backbone the model runs (``metrics.model`` where the mode filled it)."""
        return list(self.metrics.model.backbones) if self.metrics.model else [self.backbone]


def evaluation(labels: list[str], examples: list[Example], proba: np.ndarray) -> Evaluation:
    """Scores of ``proba`` (columns in ``labels`` order) against the examples' labels."""
    return Evaluation.model_validate(compute_metrics([e.label for e in examples], proba, labels))


def weights_used(info: WeightsInfo) -> WeightsUsed:
    """Where the backbone's weights came from, as the run's metrics record it."""
    return WeightsUsed(source=info.source, digest=info.digest)


Mode = Callable[[list[Example], RunOptions, Reporter, ModeContext], Outcome]

MODES: dict[RunMode, Mode] = {}


class UnknownMode(MLError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"Unknown training mode {name!r}; expected one of {', '.join(sorted(MODES))}."
        )


def register_mode(name: RunMode) -> Callable[[Mode], Mode]:
    """Register the strategy of mode ``name`` (each mode once)."""

    def register(mode: Mode) -> Mode:
        if name in MODES:
            raise ValueError(f"mode {name!r} is already registered")
        MODES[name] = mode
        return mode

    return register


def get_mode(name: str) -> Mode:
    """The strategy registered for ``name``; an unknown name is an error, never a fallback."""
    try:
        return MODES[RunMode(name)]
    except (ValueError, KeyError):
        raise UnknownMode(name) from None
