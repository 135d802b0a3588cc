"""How well a backbone's frozen features suit a labelled data set, before training on them.

LogME: K. You, Y. Liu, J. Wang, M. Long, "LogME: Practical Assessment of Pre-trained
Models for Transfer Learning", ICML 2021 (arXiv:2102.11005). For each class it fits a
Bayesian linear regression from the features to the class's one-hot column, choosing the
prior precision ``alpha`` and noise precision ``beta`` by maximizing the evidence with
the paper's fixed-point iteration (Algorithm 1), and reports the mean log marginal
evidence per sample. Higher is better; one SVD per backbone, no training, no folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_ITERATIONS = 100
TOLERANCE = 1e-3


def _class_evidence(z2: np.ndarray, sigma: np.ndarray, y2: float, n: int, d: int) -> float:
    """Maximized log evidence / n for one target column, in the SVD basis of the features.

    ``z2`` are the squared projections of the target on the left singular vectors,
    ``sigma`` the squared singular values (the non-zero eigenvalues of F^T F).
    """
    residual_outside = max(y2 - float(z2.sum()), 0.0)  # the part no weight can explain
    alpha, beta = 1.0, 1.0
    for _ in range(MAX_ITERATIONS):
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())
        m2 = float((sigma * z2 / (t + sigma) ** 2).sum())
        res2 = float((z2 / (1 + sigma / t) ** 2).sum()) + residual_outside
        alpha = gamma / (m2 + 1e-5)
        beta = (n - gamma) / (res2 + 1e-5)
        if abs(alpha / beta - t) / t <= TOLERANCE:
            break
    t = alpha / beta
    m2 = float((sigma * z2 / (t + sigma) ** 2).sum())
    res2 = float((z2 / (1 + sigma / t) ** 2).sum()) + residual_outside
    # log|A| of A = alpha I + beta F^T F over all d dimensions: the d - len(sigma)
    # directions outside the features' span contribute log(alpha) each.
    log_det = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * np.log(alpha)
    evidence = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - log_det / 2
        - beta / 2 * res2
        - alpha / 2 * m2
        - n / 2 * np.log(2 * np.pi)
    )
    return float(evidence / n)


def logme_score(features: np.ndarray, labels: Sequence[Any] | np.ndarray) -> float:
    """LogME of features (N, D) for class labels (N,): mean per-class log evidence per image."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=object)
    if f.ndim != 2 or len(f) != len(y):
        raise ValueError("features must be (N, D) with one label per row")
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max() * 1e-10 if s.size else s > 0
    u, sigma = u[:, keep], s[keep] ** 2
    scores = []
    for cls in np.unique(y):
        target = (y == cls).astype(np.float64)
        z2 = (u.T @ target) ** 2
        scores.append(_class_evidence(z2, sigma, float(target @ target), n, d))
    return float(np.mean(scores))
