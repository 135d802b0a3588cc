"""Embeddings of a run's images, per split: the first step of every mode."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from backend.runs.schemas import FeaturizedCounts, WeightsUsed
from worker.ml.errors import NotEnoughData
from worker.modes.base import Example, ModeContext, Reporter, weights_used

if TYPE_CHECKING:
    from worker.ml.features import EmbeddingResult

FEATURIZE_SPAN = (0.02, 0.85)


def embed_examples(
    examples: list[Example],
    backbone: str,
    context: ModeContext,
    reporter: Reporter,
    span: tuple[float, float] = FEATURIZE_SPAN,
    *,
    hflip: bool = False,
    detail: str | None = None,
) -> tuple[list[Example], np.ndarray, EmbeddingResult]:
    """Embeddings of ``examples`` (cached ones are reused); unreadable images are dropped.
    With ``hflip``, those of the mirrored images (cached apart). The stage is named by
    ``detail``, the backbone by default."""
    from worker.ml.features import embed_images

    settings = context.settings
    reporter.stage("featurizing", span[0], images_total=len(examples), detail=detail or backbone)
    result = embed_images(
        [(e.sha256, e.path) for e in examples],
        backbone,
        cache_dir=settings.cache_dir,
        weights_dir=settings.weights_dir,
        offline=settings.hf_offline,
        pretrained=context.pretrained,
        progress=lambda done, total: reporter.items(done, total, *span),
        should_stop=reporter.should_stop,
        hflip=hflip,
    )
    reporter.items(len(examples), len(examples), *span, force=True)
    failed = set(result.failed)
    keep = [i for i, e in enumerate(examples) if e.sha256 not in failed]
    return [examples[i] for i in keep], result.embeddings[keep], result


def split_arrays(
    examples: list[Example], X: np.ndarray, split: str
) -> tuple[list[Example], np.ndarray]:
    idx = [i for i, e in enumerate(examples) if e.split == split]
    return [examples[i] for i in idx], X[idx]


def require_trained_labels(train: list[Example], val: list[Example]) -> None:
    """Every label with validation images must have training images too."""
    missing = sorted(set(labels_of(val)) - set(labels_of(train)))
    if missing:
        raise NotEnoughData(
            "These labels have validation images but no training images: "
            + ", ".join(repr(m) for m in missing)
            + ". Move some of their images to the train split."
        )


def labels_of(examples: list[Example]) -> list[str]:
    return [e.label for e in examples]


@dataclass(frozen=True)
class EmbeddedSplits:
    """A run's images as embeddings, per split, ready for a head (or a head's warm start)."""

    train: list[Example]
    X_train: np.ndarray
    val: list[Example]
    X_val: np.ndarray
    test: list[Example]
    X_test: np.ndarray
    embedded: EmbeddingResult
    featurize_s: float

    @property
    def featurized(self) -> FeaturizedCounts:
        return FeaturizedCounts(
            computed=self.embedded.n_computed,
            cached=self.embedded.n_cached,
            skipped_unreadable=len(self.embedded.failed),
        )

    @property
    def weights(self) -> WeightsUsed:
        return weights_used(self.embedded.weights)


def embed_splits(
    examples: list[Example],
    context: ModeContext,
    reporter: Reporter,
    span: tuple[float, float] = FEATURIZE_SPAN,
) -> EmbeddedSplits:
    """Featurize (cache first) and split; every validated label must also be trained on."""
    started = time.perf_counter()
    kept, X, embedded = embed_examples(examples, context.backbone, context, reporter, span)
    featurize_s = time.perf_counter() - started
    train, X_train = split_arrays(kept, X, "train")
    val, X_val = split_arrays(kept, X, "val")
    test, X_test = split_arrays(kept, X, "test")
    require_trained_labels(train, val)
    reporter.check_cancel()
    return EmbeddedSplits(train, X_train, val, X_val, test, X_test, embedded, featurize_s)
