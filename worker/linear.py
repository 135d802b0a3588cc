"""Simplified transfer learning: frozen backbone embeddings + a trained classifier head."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.config import Settings
from worker.ml.errors import NotEnoughData
from worker.pipeline import Example, Outcome, evaluation
from worker.progress import RunReporter

FEATURIZE_RANGE = (0.02, 0.85)


def embed_examples(
    examples: list[Example],
    backbone: str,
    settings: Settings,
    reporter: RunReporter,
    span: tuple[float, float] = FEATURIZE_RANGE,
) -> tuple[list[Example], np.ndarray, Any]:
    """Embeddings of ``examples`` (cached ones are reused); unreadable images are dropped."""
    from worker.ml.features import embed_images

    reporter.stage("featurizing", span[0], images_done=0, images_total=len(examples))
    result = embed_images(
        [(e.sha256, e.path) for e in examples],
        backbone,
        cache_dir=settings.cache_dir,
        weights_dir=settings.weights_dir,
        offline=settings.hf_offline,
        progress=lambda done, total: reporter.items(done, total, *span),
        should_stop=reporter.should_stop,
    )
    reporter.items(len(examples), len(examples), *span, force=True)
    failed = set(getattr(result, "failed", ()) or ())
    keep = [i for i, e in enumerate(examples) if e.sha256 not in failed]
    return [examples[i] for i in keep], np.asarray(result.embeddings)[keep], result


def split_arrays(
    examples: list[Example], X: np.ndarray, split: str
) -> tuple[list[Example], np.ndarray]:
    idx = [i for i, e in enumerate(examples) if e.split == split]
    return [examples[i] for i in idx], X[idx]


@dataclass
class EmbeddedSplits:
    """A run's images as embeddings, per split, ready for a head (or a head's warm start)."""

    train: list[Example]
    X_train: np.ndarray
    val: list[Example]
    X_val: np.ndarray
    test: list[Example]
    X_test: np.ndarray
    embedded: Any  # worker.ml.features.EmbeddingResult
    featurize_s: float


def embed_splits(
    examples: list[Example],
    backbone: str,
    settings: Settings,
    reporter: RunReporter,
    span: tuple[float, float] = FEATURIZE_RANGE,
) -> EmbeddedSplits:
    """Featurize (cache first) and split; every validated label must also be trained on."""
    started = time.perf_counter()
    examples, X, embedded = embed_examples(examples, backbone, settings, reporter, span)
    featurize_s = time.perf_counter() - started
    train_ex, X_train = split_arrays(examples, X, "train")
    val_ex, X_val = split_arrays(examples, X, "val")
    test_ex, X_test = split_arrays(examples, X, "test")
    missing = sorted({e.label for e in val_ex} - {e.label for e in train_ex})
    if missing:
        raise NotEnoughData(
            "These labels have validation images but no training images: "
            + ", ".join(repr(m) for m in missing)
            + ". Move some of their images to the train split."
        )
    reporter.check_cancel()
    return EmbeddedSplits(train_ex, X_train, val_ex, X_val, test_ex, X_test, embedded, featurize_s)


def train_linear(
    examples: list[Example],
    backbone: str,
    options: dict[str, Any],
    settings: Settings,
    reporter: RunReporter,
) -> Outcome:
    from worker.ml.backbones import create_backbone
    from worker.ml.export import build_classifier
    from worker.ml.heads import train_head

    data = embed_splits(examples, backbone, settings, reporter)
    train_ex, X_train, val_ex, X_val = data.train, data.X_train, data.val, data.X_val
    embedded, featurize_s = data.embedded, data.featurize_s

    reporter.stage("training", 0.86)
    started = time.perf_counter()
    head = train_head(
        X_train,
        [e.label for e in train_ex],
        options.get("head", "auto"),
        seed=int(options.get("seed", 0)),
    )
    train_s = time.perf_counter() - started
    labels = [str(c) for c in head.classes]

    reporter.stage("evaluating", 0.9)
    val_proba = head.predict_proba(X_val)
    metrics = evaluation(labels, val_ex, val_proba)
    test_ex, X_test = data.test, data.X_test
    if test_ex:
        metrics["test"] = evaluation(labels, test_ex, head.predict_proba(X_test))
    metrics.update(
        eval_split="val",
        n_train=len(train_ex),
        n_val=len(val_ex),
        n_test=len(test_ex),
        head={
            "kind": head.kind,
            "params": head.params,
            "cv_scores": head.cv_scores,
            "class_counts": head.class_counts,
            "class_weights": head.class_weights,
            "imbalance_ratio": head.imbalance_ratio,
        },
        featurized={
            "computed": embedded.n_computed,
            "cached": embedded.n_cached,
            "skipped_unreadable": len(getattr(embedded, "failed", ()) or ()),
        },
        timings={"featurize_s": round(featurize_s, 3), "train_head_s": round(train_s, 3)},
        weights=_weights_dict(embedded.weights),
    )

    def build_model() -> Any:
        network, _, _ = create_backbone(
            backbone,
            pretrained=bool(options.get("pretrained", True)),
            weights_dir=settings.weights_dir,
            offline=settings.hf_offline,
        )
        return build_classifier(network, head)

    return Outcome(
        labels=labels,
        val_proba=val_proba,
        val_examples=val_ex,
        metrics=metrics,
        build_model=build_model,
        preprocess=embedded.preprocess,
        backbone=backbone,
        weights=_weights_dict(embedded.weights),
        head=head,
        feature_onnx=embedded.feature_graph,
    )


def _weights_dict(weights: Any) -> dict[str, Any]:
    return {"source": getattr(weights, "source", ""), "digest": getattr(weights, "digest", "")}
