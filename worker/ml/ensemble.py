"""Auto's combined linear probe: several backbones' embeddings, measured, not guessed.

Candidates, each scored by repeated stratified cross-validation on the training split
(out-of-fold probabilities, ``REPEATS`` x ``FOLDS``):

- ``single``: one backbone's embeddings, one L2 logistic regression;
- ``average``: one such probe per backbone, probabilities averaged with weights that
  minimise the out-of-fold log loss;
- ``concat``: the backbones' standardized embeddings side by side, one L2 logistic
  regression;

each on the plain embeddings and, when the mirrored view is given, on the mean of the
plain and mirrored embeddings (horizontal-flip test-time augmentation). Every C is chosen
by out-of-fold log loss, and the kept candidate is the one with the lowest out-of-fold log
loss (a proper score: smoother than accuracy on a few hundred images, so less of a choice
on noise).

An L2-regularised linear model's weights lie in the span of its training rows, so each fit
runs on the rows' coordinates in that span (at most N, not D, columns): exactly the same
model, several times faster on 1280- to 3840-wide embeddings. Every member ends as a
:class:`~worker.ml.heads.TrainedHead` on raw features, so numpy and the exported network
compute the same numbers.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold

from worker.ml.heads import Dense, TrainedHead, _two_logits

# Auto embeds every picture at this multiple of each backbone's input size (same crop
# fraction; worker.ml.features.scaled). 1.25x (288/288/320 px) was measured against the
# backbones' own sizes (docs/benchmarks.md): +5 and +2 pictures on dtd and hymenoptera,
# -1, -2 and about -30 on pbc_blood_cells, rsscn7 and bench/auto_time.py's 1,500 pictures,
# for 1.3-1.5x the featurization: no general gain, so Auto stays at the own size.
SCALE = 1.0
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
FOLDS = 5
# Repeats shrink as data grows: the estimate is steadier and each fit slower.
REPEATS_BY_SIZE = ((400, 3), (1000, 2))
MAX_ITER = 500
EPS = 1e-15

Kind = Literal["single", "average", "concat"]


@dataclass(frozen=True)
class Member:
    """One probe of the ensemble: a head on the concatenated features of ``backbones``."""

    backbones: tuple[str, ...]
    head: TrainedHead
    weight: float


@dataclass(frozen=True)
class Candidate:
    """One way of combining the backbones, as cross-validation measured it."""

    kind: Kind
    backbones: tuple[str, ...]
    flip: bool
    cv_accuracy: float
    cv_log_loss: float
    params: dict[str, Any]
    seconds: float

    @property
    def name(self) -> str:
        what = {
            "single": self.backbones[0],
            "average": f"average of {len(self.backbones)}",
            "concat": f"concatenation of {len(self.backbones)}",
        }[self.kind]
        return what + (" + flip" if self.flip else "")


@dataclass
class Ensemble:
    """The kept candidate, fitted on the whole training split."""

    classes: list[str]
    members: list[Member]
    flip: bool
    chosen: Candidate
    candidates: list[Candidate] = field(default_factory=list)
    folds: int = FOLDS
    repeats: int = 1
    alternatives: dict[str, list[Member]] = field(default_factory=dict)

    @property
    def backbones(self) -> list[str]:
        """Every backbone a prediction runs, in member order."""
        return list(dict.fromkeys(b for m in self.members for b in m.backbones))

    @property
    def kind(self) -> Kind:
        return self.chosen.kind

    def predict_proba(
        self, plain: Mapping[str, np.ndarray], flipped: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """Probabilities (N, C) from each backbone's plain (and, with flip, mirrored) rows."""
        return mixture_proba(self.members, plain, flipped if self.flip else None)


def mixture_proba(
    members: Sequence[Member],
    plain: Mapping[str, np.ndarray],
    flipped: Mapping[str, np.ndarray] | None,
) -> np.ndarray:
    """The weighted mean of the members' probabilities (flip: on flip-averaged features)."""
    used = list(dict.fromkeys(b for m in members for b in m.backbones))
    feats = view(plain, flipped, used)
    total: np.ndarray | None = None
    for m in members:
        p = m.weight * m.head.predict_proba(_concat(feats, m.backbones))
        total = p if total is None else total + p
    assert total is not None
    return total


def view(
    plain: Mapping[str, np.ndarray],
    flipped: Mapping[str, np.ndarray] | None,
    backbones: Sequence[str],
) -> dict[str, np.ndarray]:
    """Per backbone: the plain embeddings, or their mean with the mirrored ones."""
    if flipped is None:
        return {b: np.asarray(plain[b], dtype=np.float64) for b in backbones}
    return {
        b: (np.asarray(plain[b], dtype=np.float64) + np.asarray(flipped[b], dtype=np.float64)) / 2
        for b in backbones
    }


def _concat(feats: Mapping[str, np.ndarray], backbones: Sequence[str]) -> np.ndarray:
    return np.concatenate([feats[b] for b in backbones], axis=1)


def repeats_for(n: int) -> int:
    for limit, repeats in REPEATS_BY_SIZE:
        if n <= limit:
            return repeats
    return 1


@dataclass
class _Space:
    """Standardized features and their coordinates in the span of the training rows."""

    mean: np.ndarray
    std: np.ndarray
    basis: np.ndarray  # (D, r): Z @ basis are the coordinates
    coords: np.ndarray  # (N, r)

    @classmethod
    def of(cls, X: np.ndarray) -> _Space:
        mean = X.mean(axis=0)
        std = X.std(axis=0)
        std[std < 1e-12] = 1.0
        Z = (X - mean) / std
        # Z = U S Vt; the rows' coordinates in the span are U S = Z V.
        u, s, vt = np.linalg.svd(Z, full_matrices=False)
        keep = s > s.max() * 1e-10
        return cls(mean, std, vt[keep].T, u[:, keep] * s[keep])

    def head(
        self, model: LogisticRegression, classes: list[str], params: dict[str, Any]
    ) -> TrainedHead:
        coef, intercept = _two_logits(model.coef_, model.intercept_)
        w_std = coef @ self.basis.T  # on standardized features
        w = w_std / self.std
        return TrainedHead(
            kind="logreg",
            classes=list(classes),
            layers=[Dense(w, intercept - w @ self.mean)],
            params=params,
            cv_scores={},
            class_counts={},
            class_weights={},
        )


def _model(C: float, class_weight: dict[int, float] | None) -> LogisticRegression:
    return LogisticRegression(C=C, class_weight=class_weight, max_iter=MAX_ITER, warm_start=True)


def _fit(model: LogisticRegression, X: np.ndarray, y: np.ndarray) -> LogisticRegression:
    with warnings.catch_warnings():
        # The warm-started path converges to the tolerance that matters here.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def _oof(
    coords: np.ndarray,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    repeats: int,
    n_classes: int,
    class_weight: dict[int, float] | None,
) -> dict[float, np.ndarray]:
    """Out-of-fold probabilities (repeats, N, C) of every C of the grid."""
    out = {c: np.zeros((repeats, len(y), n_classes)) for c in C_GRID}
    per_repeat = len(splits) // repeats
    for i, (tr, te) in enumerate(splits):
        model = _model(C_GRID[0], class_weight)
        for c in C_GRID:  # increasing C, each fit warm-started from the last
            model.set_params(C=c)
            _fit(model, coords[tr], y[tr])
            out[c][i // per_repeat][np.ix_(te, model.classes_)] = model.predict_proba(coords[te])
    return out


def _scores(proba: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean over repeats of (accuracy, log loss) of out-of-fold probabilities (R, N, C)."""
    p = np.clip(proba, EPS, 1.0)
    p = p / p.sum(axis=2, keepdims=True)
    accuracy = float(np.mean(p.argmax(axis=2) == y[None, :]))
    log_loss = float(-np.mean(np.log(p[:, np.arange(len(y)), y])))
    return accuracy, log_loss


def _mixture_weights(probas: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Simplex weights minimising the log loss of the weighted mean of ``probas``."""
    from scipy.optimize import minimize

    stack = np.stack([np.clip(p[:, np.arange(len(y)), y], EPS, 1.0) for p in probas])  # (M,R,N)

    def loss(theta: np.ndarray) -> float:
        w = np.exp(theta - theta.max())
        w /= w.sum()
        return float(-np.mean(np.log(np.tensordot(w, stack, axes=1))))

    result = minimize(loss, np.zeros(len(probas)), method="Nelder-Mead",
                      options={"xatol": 1e-3, "fatol": 1e-6, "maxiter": 400})  # fmt: skip
    w = np.exp(result.x - result.x.max())
    return np.asarray(w / w.sum())


def fit_ensemble(
    plain: Mapping[str, np.ndarray],
    labels: Sequence[Any],
    flipped: Mapping[str, np.ndarray] | None = None,
    *,
    seed: int = 0,
    class_weight: Literal["balanced"] | None = "balanced",
    kinds: Sequence[Kind] = ("single", "average", "concat"),
    fit_all: bool = False,
) -> Ensemble:
    """Measure every candidate on the training rows and fit the best one on all of them.

    ``plain`` (and ``flipped``, the mirrored view) map backbone names to (N, D) embeddings
    of the same N training images, labelled ``labels``. With ``fit_all`` every candidate
    is also fitted (``Ensemble.alternatives``, by name), for benchmarks.
    """
    backbones = list(plain)
    classes_arr, y = np.unique(np.asarray(labels, dtype=object), return_inverse=True)
    classes = [str(c) for c in classes_arr]
    k = len(classes)
    if k < 2:
        raise ValueError("an ensemble needs at least 2 classes")
    counts = np.bincount(y, minlength=k)
    cw = (
        {i: float(len(y) / (k * n)) for i, n in enumerate(counts)}
        if class_weight == "balanced"
        else None
    )
    folds = min(FOLDS, int(counts.min()))
    if folds < 2:
        raise ValueError("every label needs at least 2 training images to cross-validate")
    repeats = repeats_for(len(y))
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    splits = list(cv.split(np.zeros(len(y)), y))

    views: list[tuple[bool, dict[str, np.ndarray]]] = [(False, view(plain, None, backbones))]
    if flipped is not None:
        views.append((True, view(plain, flipped, backbones)))

    candidates: list[Candidate] = []
    fitted: dict[int, list[tuple[tuple[str, ...], float, float]]] = {}  # -> (members, C, w)
    for flip, feats in views:
        best_single: dict[str, tuple[float, np.ndarray, float]] = {}  # b -> (C, oof, seconds)
        for b in backbones:
            started = time.perf_counter()
            oof = _oof(_Space.of(feats[b]).coords, y, splits, repeats, k, cw)
            c = min(C_GRID, key=lambda c: _scores(oof[c], y)[1])
            seconds = time.perf_counter() - started
            best_single[b] = (c, oof[c], seconds)
            if "single" in kinds or len(backbones) == 1:
                acc, ll = _scores(oof[c], y)
                fitted[len(candidates)] = [((b,), c, 1.0)]
                candidates.append(Candidate("single", (b,), flip, acc, ll, {"C": c}, seconds))
        if len(backbones) < 2:
            continue
        if "average" in kinds:
            started = time.perf_counter()
            w = _mixture_weights([best_single[b][1] for b in backbones], y)
            mix = np.tensordot(w, np.stack([best_single[b][1] for b in backbones]), axes=1)
            acc, ll = _scores(mix, y)
            seconds = time.perf_counter() - started + sum(s for _, _, s in best_single.values())
            params = {
                "weights": {b: round(float(x), 4) for b, x in zip(backbones, w, strict=True)},
                "C": {b: best_single[b][0] for b in backbones},
            }
            fitted[len(candidates)] = [
                ((b,), best_single[b][0], float(x)) for b, x in zip(backbones, w, strict=True)
            ]
            candidates.append(
                Candidate("average", tuple(backbones), flip, acc, ll, params, seconds)
            )
        if "concat" in kinds:
            started = time.perf_counter()
            oof = _oof(_Space.of(_concat(feats, backbones)).coords, y, splits, repeats, k, cw)
            c = min(C_GRID, key=lambda c: _scores(oof[c], y)[1])
            acc, ll = _scores(oof[c], y)
            fitted[len(candidates)] = [(tuple(backbones), c, 1.0)]
            candidates.append(
                Candidate(
                    "concat",
                    tuple(backbones),
                    flip,
                    acc,
                    ll,
                    {"C": c},
                    time.perf_counter() - started,
                )
            )

    best = min(range(len(candidates)), key=lambda i: (candidates[i].cv_log_loss, i))
    chosen = candidates[best]
    fit = lambda i: _fit_members(fitted[i], dict(views)[candidates[i].flip], y, classes, cw)  # noqa: E731
    others = {candidates[i].name: fit(i) for i in range(len(candidates))} if fit_all else {}
    members = others.get(chosen.name) or fit(best)
    return Ensemble(classes, members, chosen.flip, chosen, candidates, folds, repeats, others)


def _fit_members(
    recipe: list[tuple[tuple[str, ...], float, float]],
    feats: Mapping[str, np.ndarray],
    y: np.ndarray,
    classes: list[str],
    cw: dict[int, float] | None,
) -> list[Member]:
    """Fit each (backbones, C, weight) of a candidate on every training row."""
    members = []
    for member_backbones, c, weight in recipe:
        if weight <= 1e-6:
            continue  # a member the mixture does not use is not run at all
        space = _Space.of(_concat(feats, member_backbones))
        model = _fit(_model(c, cw), space.coords, y)
        members.append(Member(member_backbones, space.head(model, classes, {"C": c}), weight))
    total = sum(m.weight for m in members)
    return [Member(m.backbones, m.head, m.weight / total) for m in members]


def describe(candidate: Candidate) -> str:
    """A candidate in a person's words, with its cross-validated scores."""
    return (
        f"{candidate.name}: {100 * candidate.cv_accuracy:.1f} % cross-validated accuracy, "
        f"log loss {candidate.cv_log_loss:.3f}"
    )
