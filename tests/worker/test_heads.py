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


def test_a_large_training_set_costs_about_one_copy_of_its_features() -> None:
    """40,000 embeddings of a 100,000-image project: the head once held three float64
    copies of them (and a float64 copy of 80 % per CV fold of 4 x 5 fits), 2.5 GB."""
    import tracemalloc

    from worker.ml import heads

    rng = np.random.default_rng(0)
    n, dim = 12_000, 256
    centers = rng.normal(0, 1, (4, dim)).astype(np.float32)
    y = rng.integers(0, 4, n)
    X = centers[y] + rng.normal(0, 2, (n, dim)).astype(np.float32)
    tracemalloc.start()
    try:
        head = train_head(X, np.array([f"c{c}" for c in y]), "logreg")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * X.nbytes, peak / X.nbytes
    assert (head.predict(X) == np.array([f"c{c}" for c in y])).mean() > 0.9
    assert n > heads.CV_MAX_ROWS  # C was chosen on a sample; every row was fitted


def test_standardize_is_the_plain_formula_in_float32() -> None:
    from worker.ml.heads import standardize

    X, _ = _blobs(3, dim=300)  # more columns than one block
    X[:, 7] = 4.0  # a constant feature stays at zero
    Z, mean, std = standardize(X.astype(np.float32))
    plain_std = X.std(axis=0)
    plain_std[plain_std < 1e-12] = 1.0
    assert Z.dtype == np.float32
    assert np.allclose(Z, (X - X.mean(axis=0)) / plain_std, atol=1e-4)
    assert np.allclose(mean, X.mean(axis=0)) and std[7] == 1.0 and (Z[:, 7] == 0).all()
