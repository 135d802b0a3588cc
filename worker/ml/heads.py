"""Classifier heads trained on cached embeddings: logistic regression, linear SVM, MLP.

Every head is stored as a small stack of dense layers (the feature standardization is
folded into the first one) so that the same numbers drive ``predict_proba`` in numpy and
the exported network from ``to_torch``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_val_score
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits
from torch import nn

HeadKind = Literal["logreg", "svm", "mlp", "auto"]
KINDS: tuple[str, ...] = ("logreg", "svm", "mlp")
LOGREG_CS = (0.001, 0.01, 0.1, 1.0)
SVM_CS = (0.0001, 0.001, 0.01)
MLP_ALPHAS = (0.1, 10.0)
MLP_HIDDEN = 128
MLP_EPOCHS = 150
MLP_LR = 3e-3
CV_SCORING = "balanced_accuracy"
MAX_FOLDS = 5
# Hyper-parameters are chosen on at most this many rows (a stratified sample); the chosen
# head is then fitted on every row. On 40,000 rows the full grid search was 20 fits of the
# whole set and a float64 copy of 80 % of it per fold (docs/benchmarks.md, "A 100,000-image
# project"); a few thousand rows choose C as well.
CV_MAX_ROWS = 5_000
PREDICT_BLOCK = 8_192  # rows per block of predict_proba (float64 temporaries stay small)


@dataclass
class Dense:
    """One dense layer ``x @ weight.T + bias``, optionally followed by ReLU."""

    weight: np.ndarray
    bias: np.ndarray
    relu: bool = False


@dataclass
class TrainedHead:
    """A fitted head: dense layers from raw features to logits over ``classes``."""

    kind: str
    classes: list[Any]
    layers: list[Dense]
    params: dict[str, Any]
    cv_scores: dict[str, float]
    class_counts: dict[str, int]
    class_weights: dict[str, float]
    imbalance_ratio: float = field(default=1.0)

    def logits(self, X: np.ndarray) -> np.ndarray:
        """Logits (N, C) in float64, computed PREDICT_BLOCK rows at a time."""
        out = np.empty((len(X), self.layers[-1].weight.shape[0]), dtype=np.float64)
        for start in range(0, len(X), PREDICT_BLOCK):
            h = np.asarray(X[start : start + PREDICT_BLOCK], dtype=np.float64)
            for layer in self.layers:
                h = h @ layer.weight.T + layer.bias
                if layer.relu:
                    h = np.maximum(h, 0.0)
            out[start : start + len(h)] = h
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C), columns in the order of ``classes``."""
        z = self.logits(X)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable class of each row."""
        return np.asarray(self.classes, dtype=object)[self.logits(X).argmax(axis=1)]

    def to_torch(self) -> nn.Module:
        """An ``nn.Module`` mapping features to logits; its softmax equals predict_proba."""
        modules: list[nn.Module] = []
        for layer in self.layers:
            linear = nn.Linear(layer.weight.shape[1], layer.weight.shape[0])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.weight.astype(np.float32)))
                linear.bias.copy_(torch.from_numpy(layer.bias.astype(np.float32)))
            modules.append(linear)
            if layer.relu:
                modules.append(nn.ReLU())
        return nn.Sequential(*modules).eval()

    @property
    def num_features(self) -> int:
        return int(self.layers[0].weight.shape[1])


@dataclass
class _Fit:
    layers: list[Dense]  # on standardized features
    params: dict[str, Any]
    cv_score: float


def _two_logits(coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's binary models output one logit for class 1; softmax over [0, z] equals it."""
    if coef.shape[0] != 1:
        return coef, intercept
    return (
        np.vstack([np.zeros_like(coef), coef]),
        np.concatenate([np.zeros_like(intercept), intercept]),
    )


def _cv(y: np.ndarray, seed: int) -> StratifiedKFold | None:
    """Stratified folds capped by the smallest class count; None when CV is impossible."""
    n_splits = min(MAX_FOLDS, int(np.bincount(y).min()))
    if n_splits < 2:
        return None
    return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)


def _select(
    make: Callable[[float], ClassifierMixin],
    grid: Sequence[float],
    Z: np.ndarray,
    y: np.ndarray,
    cv: StratifiedKFold | None,
) -> tuple[float, dict[str, float], float]:
    """Pick the grid value with the best CV score (ties go to the earlier, simpler value),
    cross-validated on at most CV_MAX_ROWS rows (a stratified sample)."""
    if cv is None:
        value = grid[len(grid) // 2]
        return value, {}, float("nan")
    if len(y) > CV_MAX_ROWS:
        rows = cv_sample(y, CV_MAX_ROWS, seed=int(cv.random_state or 0))
        Z, y = Z[rows], y[rows]
    scores = {
        str(v): float(np.mean(cross_val_score(make(v), Z, y, cv=cv, scoring=CV_SCORING)))
        for v in grid
    }
    best = max(grid, key=lambda v: scores[str(v)])
    return best, scores, scores[str(best)]


def cv_sample(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a stratified sample of ``n`` rows of ``y`` (every class keeps at
    least MAX_FOLDS rows where it has them, so the folds stay possible)."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(y)
    take = np.maximum(np.minimum(counts, MAX_FOLDS), np.round(counts * n / len(y)).astype(int))
    picked = [
        rng.choice(np.flatnonzero(y == c), int(k), replace=False) for c, k in enumerate(take) if k
    ]
    return np.sort(np.concatenate(picked))


def _fit_logreg(
    Z: np.ndarray, y: np.ndarray, cw: dict[int, float] | None, cv: StratifiedKFold | None
) -> _Fit:
    def make(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, class_weight=cw, max_iter=2000)

    c, grid_scores, score = _select(make, LOGREG_CS, Z, y, cv)
    model = make(c).fit(Z, y)
    w, b = _two_logits(model.coef_, model.intercept_)
    return _Fit([Dense(w, b)], {"C": c, "cv_grid": grid_scores}, score)


def _fit_svm(
    Z: np.ndarray, y: np.ndarray, cw: dict[int, float] | None, cv: StratifiedKFold | None
) -> _Fit:
    def make(c: float) -> LinearSVC:
        return LinearSVC(C=c, class_weight=cw, max_iter=20000)

    c, grid_scores, score = _select(make, SVM_CS, Z, y, cv)
    # Platt-style calibration: a multinomial logistic regression on out-of-fold decision
    # values. Both maps are linear, so the head stays one dense layer plus softmax.
    if cv is not None:
        decision = cross_val_predict(make(c), Z, y, cv=cv, method="decision_function")
    else:
        decision = make(c).fit(Z, y).decision_function(Z)
    decision = decision.reshape(len(y), -1)
    calibrator = LogisticRegression(C=100.0, class_weight=cw, max_iter=2000).fit(decision, y)
    svm = make(c).fit(Z, y)
    cal_w, cal_b = _two_logits(calibrator.coef_, calibrator.intercept_)
    svm_w = svm.coef_.reshape(-1, Z.shape[1])
    svm_b = np.atleast_1d(svm.intercept_)
    w = cal_w @ svm_w
    b = cal_w @ svm_b + cal_b
    return _Fit([Dense(w, b)], {"C": c, "cv_grid": grid_scores}, score)


class _TorchMLP(ClassifierMixin, BaseEstimator):
    """One-hidden-layer MLP trained full-batch in PyTorch (sklearn's is ~10x slower here)."""

    def __init__(
        self, alpha: float = 1e-2, class_weight: dict[int, float] | None = None, seed: int = 0
    ) -> None:
        self.alpha = alpha
        self.class_weight = class_weight
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> _TorchMLP:
        self.classes_ = np.unique(y)
        k = int(y.max()) + 1
        x_t = torch.from_numpy(np.asarray(X, dtype=np.float32))
        y_t = torch.from_numpy(np.asarray(y, dtype=np.int64))
        weight = None
        if self.class_weight is not None:
            weight = torch.tensor([self.class_weight.get(c, 1.0) for c in range(k)])
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            net = nn.Sequential(
                nn.Linear(X.shape[1], MLP_HIDDEN), nn.ReLU(), nn.Linear(MLP_HIDDEN, k)
            )
        optimizer = torch.optim.Adam(net.parameters(), lr=MLP_LR)
        threads = torch.get_num_threads()
        # Tiny matmuls: thread hand-offs cost more than they save, badly so on busy CPUs.
        torch.set_num_threads(1)
        try:
            self._train(net, optimizer, x_t, y_t, weight)
        finally:
            torch.set_num_threads(threads)
        self.net_: nn.Sequential = net.eval()
        return self

    def _train(
        self,
        net: nn.Sequential,
        optimizer: torch.optim.Optimizer,
        x_t: torch.Tensor,
        y_t: torch.Tensor,
        weight: torch.Tensor | None,
    ) -> None:
        for _ in range(MLP_EPOCHS):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(net(x_t), y_t, weight=weight)
            # L2 on the weights scaled like sklearn's MLPClassifier alpha.
            l2 = torch.stack([m.weight.pow(2).sum() for m in net if isinstance(m, nn.Linear)]).sum()
            (loss + self.alpha * l2 / (2 * len(y_t))).backward()
            optimizer.step()

    def predict(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = self.net_(torch.from_numpy(np.asarray(X, dtype=np.float32)))
        return logits.argmax(1).numpy()

    def layers(self) -> list[Dense]:
        linears = [m for m in self.net_ if isinstance(m, nn.Linear)]

        def numpy(t: torch.Tensor) -> np.ndarray:
            return t.detach().double().numpy()

        return [
            Dense(numpy(linears[0].weight), numpy(linears[0].bias), relu=True),
            Dense(numpy(linears[1].weight), numpy(linears[1].bias)),
        ]


def _fit_mlp(
    Z: np.ndarray, y: np.ndarray, cw: dict[int, float] | None, cv: StratifiedKFold | None, seed: int
) -> _Fit:
    def make(alpha: float) -> _TorchMLP:
        return _TorchMLP(alpha=alpha, class_weight=cw, seed=seed)

    alpha, grid_scores, score = _select(make, MLP_ALPHAS, Z, y, cv)
    model = make(alpha).fit(Z, y)
    params = {"alpha": alpha, "hidden": MLP_HIDDEN, "cv_grid": grid_scores}
    return _Fit(model.layers(), params, score)


def standardize(X: np.ndarray, block: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Z, mean, std)``: ``Z = (X - mean) / std`` in float32 (what the heads fit on; the
    statistics in float64), made ``block`` rows at a time into one new array.
    ``(X - mean) / std`` in float64 held three copies of X at its peak: 1.2 GB at 40,000
    embeddings (docs/benchmarks.md, "A 100,000-image project"). Constant features get
    std 1, so they stay at zero."""
    X = np.asarray(X)
    mean = X.mean(axis=0, dtype=np.float64)
    squares = np.zeros(X.shape[1])
    for start in range(0, len(X), block):
        squares += ((X[start : start + block] - mean) ** 2).sum(axis=0)
    std = np.sqrt(squares / max(len(X), 1))
    std[std < 1e-12] = 1.0
    Z = np.empty(X.shape, dtype=np.float32)
    for start in range(0, len(X), block):
        Z[start : start + block] = (X[start : start + block] - mean) / std
    return Z, mean, std


def train_head(
    X: np.ndarray,
    y: Sequence[Any] | np.ndarray,
    kind: HeadKind = "logreg",
    *,
    class_weight: Literal["balanced"] | None = "balanced",
    seed: int = 0,
) -> TrainedHead:
    """Train a classifier head on features ``X`` (N, D) with labels ``y``.

    Hyper-parameters are chosen by stratified cross-validation on (X, y); ``auto`` tries
    every kind and keeps the best CV score, preferring the simpler kind on ties.
    """
    if kind not in (*KINDS, "auto"):
        raise ValueError(f"unknown head kind {kind!r}; expected one of {(*KINDS, 'auto')}")
    classes, y_idx = np.unique(np.asarray(y, dtype=object), return_inverse=True)
    if len(classes) < 2:
        raise ValueError("train_head needs at least 2 classes")
    counts = np.bincount(y_idx, minlength=len(classes))
    if class_weight == "balanced":
        weights = len(y_idx) / (len(classes) * counts)
        cw: dict[int, float] | None = {i: float(w) for i, w in enumerate(weights)}
    else:
        weights = np.ones(len(classes))
        cw = None

    Z, mean, std = standardize(X)
    cv = _cv(y_idx, seed)

    fitters: dict[str, Callable[[], _Fit]] = {
        "logreg": lambda: _fit_logreg(Z, y_idx, cw, cv),
        "svm": lambda: _fit_svm(Z, y_idx, cw, cv),
        "mlp": lambda: _fit_mlp(Z, y_idx, cw, cv, seed),
    }
    tried = KINDS if kind == "auto" else (kind,)
    # One BLAS thread: these are small problems (hundreds of rows), where thread hand-offs
    # cost more than they save; on a busy 2-core machine two threads made logistic
    # regression's CV take 1.7 s of CPU instead of 0.18 s (docs/benchmarks.md).
    with threadpool_limits(1):
        fits = {k: fitters[k]() for k in tried}
    best = max(tried, key=lambda k: np.nan_to_num(fits[k].cv_score, nan=-1.0))
    fit = fits[best]

    # Fold the standardization into the first layer: W((x - m) / s) + b.
    first = fit.layers[0]
    w = first.weight / std
    layers = [Dense(w, first.bias - w @ mean, first.relu), *fit.layers[1:]]
    names = [str(c) for c in classes]
    return TrainedHead(
        kind=best,
        classes=list(classes),
        layers=layers,
        params=fit.params,
        cv_scores={k: f.cv_score for k, f in fits.items()},
        class_counts=dict(zip(names, (int(c) for c in counts), strict=True)),
        class_weights=dict(zip(names, (float(w) for w in weights), strict=True)),
        imbalance_ratio=float(counts.max() / counts.min()),
    )
