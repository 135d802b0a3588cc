"""Classifier heads on features: accuracy, torch parity, class imbalance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.ml.heads import train_head


def _blobs(n_classes: int, n: int = 90, dim: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (n_classes, dim))
    sizes = [n // n_classes + (20 if c == 0 else 0) for c in range(n_classes)]  # imbalanced
    y = np.concatenate([[f"c{c}"] * s for c, s in enumerate(sizes)])
    X = np.concatenate([centers[c] + rng.normal(0, 1.5, (s, dim)) for c, s in enumerate(sizes)])
    return X * 10 + 5, y  # unscaled features: the head must standardize


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("kind", ["logreg", "svm", "mlp"])
def test_heads_learn_and_export_to_torch(kind: str, n_classes: int) -> None:
    X, y = _blobs(n_classes)
    X_test, y_test = _blobs(n_classes, seed=0)
    head = train_head(X, y, kind)  # type: ignore[arg-type]
    assert head.kind == kind and head.classes == sorted(set(y))
    proba = head.predict_proba(X_test)
    assert proba.shape == (len(X_test), n_classes)
    assert np.allclose(proba.sum(1), 1)
    assert (head.predict(X_test) == y_test).mean() > 0.9
    with torch.no_grad():
        logits = head.to_torch()(torch.from_numpy(X_test.astype(np.float32)))
    assert np.abs(torch.softmax(logits, -1).numpy() - proba).max() < 1e-5
    assert kind in head.cv_scores


def test_auto_compares_every_kind_and_reports_imbalance() -> None:
    X, y = _blobs(3)
    head = train_head(X, y, "auto")
    assert set(head.cv_scores) == {"logreg", "svm", "mlp"}
    assert head.cv_scores[head.kind] == max(head.cv_scores.values())
    assert head.class_counts == {"c0": 50, "c1": 30, "c2": 30}
    assert head.class_weights["c0"] < head.class_weights["c1"]
    assert head.imbalance_ratio == pytest.approx(50 / 30)


def test_trains_with_one_image_per_class_and_fold() -> None:
    X, y = np.array([[0.0, 1.0], [1.0, 0.0]]), np.array(["a", "b"])
    head = train_head(X, y, "logreg")
    assert list(head.predict(X)) == ["a", "b"]
