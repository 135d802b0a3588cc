"""The registry of training modes and the reporter a sub-step of auto sees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def test_splits_are_views_of_one_array_of_embeddings() -> None:
    """At 100,000 images each copy of the embeddings is 0.5 GB: split by slicing."""
    from worker.modes.embeddings import by_split, split_arrays

    def example(i: int, split: str) -> Example:
        return Example(i, f"{i:064x}", Path(f"{i}.jpg"), f"{i}.jpg", "ants", split)

    mixed = [example(i, ("val", "train", "test", "train")[i % 4]) for i in range(40)]
    ordered = by_split(mixed)
    X = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    for split in ("train", "val", "test"):
        chosen, rows = split_arrays(ordered, X, split)
        assert np.shares_memory(rows, X)
        assert [e.split for e in chosen] == [split] * len(chosen)
        assert [e.image_id for e in chosen] == sorted(e.image_id for e in chosen)
        assert rows.shape == (len(chosen), 3)
