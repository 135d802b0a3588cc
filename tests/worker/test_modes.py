"""The registry of training modes and the reporter a sub-step of auto sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.runs.models import RunMode
from backend.runs.schemas import EpochRecord
from worker.ml.errors import NotEnoughData
from worker.modes import MODES, get_mode
from worker.modes.auto import ScaledReporter, train_auto
from worker.modes.base import Example, UnknownMode
from worker.modes.embeddings import require_trained_labels
from worker.modes.finetune import train_finetune
from worker.modes.linear import train_linear


def test_every_mode_the_api_accepts_has_one_strategy() -> None:
    assert {
        RunMode.LINEAR: train_linear,
        RunMode.FINETUNE: train_finetune,
        RunMode.AUTO: train_auto,
    } == MODES
    assert get_mode("finetune") is train_finetune


def test_an_unknown_mode_is_an_error_not_a_fallback() -> None:
    with pytest.raises(UnknownMode, match=r"'magic'.*auto, finetune, linear"):
        get_mode("magic")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def stage(
        self,
        name: str,
        progress: float,
        *,
        images_total: int | None = None,
        unit: str = "images",
        detail: str | None = None,
    ) -> None:
        self.calls.append(("stage", name, progress, images_total))

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
        self.calls.append(("items", done, total, lo, hi, force))

    def record_history(self, history: list[EpochRecord]) -> None:
        self.calls.append(("history", len(history)))

    def should_stop(self) -> bool:
        return False

    def check_cancel(self) -> None:
        self.calls.append(("check",))


def test_scaled_reporter_maps_a_sub_steps_progress_onto_its_share_of_the_run() -> None:
    run = Recorder()
    sub = ScaledReporter(run, 0.5, 0.9)
    sub.stage("featurizing", 0.0, images_total=10)
    sub.items(5, 10, 0.0, 1.0, force=True)
    sub.stage("evaluating", 1.0)
    assert run.calls == [
        ("stage", "featurizing", 0.5, 10),
        ("items", 5, 10, 0.5, 0.9, True),
        ("stage", "evaluating", 0.9, None),
    ]


def test_a_label_only_in_validation_is_named_before_any_training() -> None:
    def example(i: int, label: str, split: str) -> Example:
        return Example(i, f"{i:064x}", Path(f"{i}.jpg"), f"{i}.jpg", label, split)

    train = [example(1, "ants", "train"), example(2, "bees", "train")]
    require_trained_labels(train, [example(3, "ants", "val")])
    with pytest.raises(NotEnoughData, match=r"'wasps'.*Move some of their images"):
        require_trained_labels(train, [example(4, "wasps", "val"), example(5, "bees", "val")])
