"""Train/validation splits, data checks and classification metrics."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from sklearn import metrics as skm

from backend.runs.readiness import training_blocker
from worker.ml.errors import NotEnoughData

Split = Literal["train", "val"]


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def stratified_split(
    keys: Sequence[str], labels: Sequence[str], val_fraction: float = 0.2, seed: int = 0
) -> dict[str, Split]:
    """Assign each key to train or val, stratified by label and independent of input order.

    Within each label, keys are ranked by a hash of (seed, key) and the first
    ``round(n * val_fraction)`` go to val; every label with at least two images gets at
    least one val and one train image.
    """
    if len(keys) != len(labels):
        raise ValueError("keys and labels must have the same length")
    by_label: dict[str, list[str]] = defaultdict(list)
    for key, label in zip(keys, labels, strict=True):
        by_label[label].append(key)
    split: dict[str, Split] = {}
    for members in by_label.values():
        ranked = sorted(members, key=lambda k: _rank(seed, k))
        n = len(ranked)
        n_val = min(max(1, round(n * val_fraction)), n - 1) if n >= 2 else 0
        for i, key in enumerate(ranked):
            split[key] = "val" if i < n_val else "train"
    return split


def check_trainable(label_counts: Mapping[str, int]) -> None:
    """Raise NotEnoughData, naming the labels at fault, unless a classifier can be trained."""
    blocker = training_blocker(label_counts)
    if blocker is not None:
        raise NotEnoughData(blocker)


def compute_metrics(
    y_true: Sequence[int] | Sequence[str] | np.ndarray,
    proba: np.ndarray,
    labels: Sequence[str],
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, per-class scores, confusion matrix, macro F1, log loss.

    ``y_true`` holds label indices into ``labels`` or label names; ``proba`` is (N, C).
    All values are plain Python numbers, ready for JSON.
    """
    names = list(labels)
    index = {name: i for i, name in enumerate(names)}
    y = np.asarray([index[v] if isinstance(v, str) else int(v) for v in y_true], dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape != (len(y), len(names)):
        raise ValueError(f"proba must be (n_samples, {len(names)}), got {proba.shape}")
    pred = proba.argmax(axis=1)
    ids = list(range(len(names)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, pred, labels=ids, zero_division=0
    )
    present = [i for i in ids if support[i] > 0]
    # Balanced accuracy is the mean recall over classes that occur in y_true.
    balanced = float(np.mean([recall[i] for i in present])) if present else 0.0
    eps = 1e-15
    clipped = np.clip(proba, eps, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    log_loss = float(-np.mean(np.log(clipped[np.arange(len(y)), y]))) if len(y) else 0.0
    return {
        "accuracy": float(np.mean(pred == y)) if len(y) else 0.0,
        "balanced_accuracy": balanced,
        "macro_f1": float(np.mean([f1[i] for i in present])) if present else 0.0,
        "log_loss": log_loss,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "confusion_matrix": {
            "labels": names,
            "matrix": skm.confusion_matrix(y, pred, labels=ids).astype(int).tolist(),
        },
    }
