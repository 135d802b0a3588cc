"""The data doctor: what is wrong with a project's images and labels, measured.

Pure functions over embeddings (``worker/ml/features.embed_images``), picture signatures
(``worker/ml/signatures``) and the image rows' labels, splits and sizes:

- near duplicates (embedding cosine proposes, perceptual hashes and ORB geometry confirm),
  within a label, across labels and across splits (leakage);
- likely label errors: cleanlab's confident learning on out-of-fold probabilities of a
  cross-validated logistic regression on the embeddings;
- domain fit: that same cross-validated accuracy against chance, and kNN agreement;
- class balance, thin labels, the unlabelled backlog, small pictures, grayscale/colour
  mix, outliers far from every label;
- what to label next (uncertainty times distance to what is labelled) and how many
  labels per class the next run needs (a learning curve).

Nothing here knows about HTTP or the database: :func:`examine` takes plain arrays.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from worker.ml.signatures import Signature, hash_distance, hash_matrix, matching_points

Severity = Literal["error", "warning", "info"]

# Logistic regression on standardized embeddings (projected on their first
# FEATURE_COMPONENTS principal axes: an orthogonal projection keeps the L2 penalty's
# meaning and makes each fit several times faster); strong regularization suits the few
# hundred images per label this app is for (docs/benchmarks.md, "Data doctor").
LOGREG_C = 0.01
LOGREG_TOL = 1e-3
FEATURE_COMPONENTS = 256
MAX_FOLDS = 5
NEIGHBOURS = 10
# Nearest neighbours are searched exactly up to EXACT_SEARCH_MAX rows (the all-pairs
# similarity matrix: quadratic, ~10 minutes of one core at 100,000 rows); above, in an
# inverted-file index of IVF_CELLS_PER_ROOT * sqrt(n) cells, trained on IVF_TRAIN_PER_CELL
# rows per cell, probing the IVF_PROBES cells nearest to each row.
EXACT_SEARCH_MAX = 20_000
IVF_CELLS_PER_ROOT = 2
IVF_TRAIN_PER_CELL = 20
IVF_TRAIN_ITERATIONS = 10
IVF_PROBES = 16
# Near duplicates: a picture's nearest neighbour (centred cosine) is a candidate from
# CANDIDATE_COSINE up, its next two from SECOND_CANDIDATE_COSINE up, and any pair whose
# perceptual hashes are within CANDIDATE_HASH_BITS. A candidate is confirmed by
# MIN_INLIERS geometrically consistent ORB matches, or by hashes within SAME_HASH_BITS.
CANDIDATE_COSINE = 0.35
SECOND_CANDIDATE_COSINE = 0.6
CANDIDATE_HASH_BITS = 8
SAME_HASH_BITS = 4
MIN_INLIERS = 25
EXACT_COSINE = 0.9995
# Other findings.
IMBALANCE_RATIO = 3.0
FEW_IMAGES = 10
MIN_PER_LABEL = 20
SMALL_FRACTION = 0.5  # of the backbone's input side
OUTLIER_Z = 3.5
OUTLIER_MIN_LABELLED = 30
MAX_OUTLIERS = 20
DIVERSE_PICKS = 200
GOOD_LIFT = 0.75
FAIR_LIFT = 0.4
MARGINAL_GAIN = 0.01  # a doubling of the labels that gains less than this is not needed
MAX_EXAMPLES = 12


@dataclass(frozen=True)
class Picture:
    """What the doctor knows of an image besides its pixels."""

    image_id: int
    label: str | None
    split: str | None
    width: int
    height: int


@dataclass
class Finding:
    kind: str
    severity: Severity
    count: int
    message: str
    why: str
    image_ids: list[int] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)


@dataclass
class DuplicateGroup:
    image_ids: list[int]
    kind: Literal["exact", "near"]
    across_splits: bool
    across_labels: bool
    labels: list[str | None]
    splits: list[str | None]


@dataclass
class LabelIssue:
    image_id: int
    given_label: str
    suggested_label: str
    score: float  # how likely the given label is wrong: 1 - its out-of-fold probability
    confidence: float  # out-of-fold probability of the suggested label


@dataclass
class Suggestion:
    image_id: int
    suggested_label: str
    confidence: float


@dataclass
class Examination:
    findings: list[Finding]
    label_issues: list[LabelIssue]
    duplicates: list[DuplicateGroup]
    domain_fit: dict[str, Any]
    suggestions: list[Suggestion]
    labels_needed: dict[str, Any]
    estimate: dict[str, Any]
    stats: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class NotExaminable(ValueError):
    """The images and labels given cannot be examined; the message says why."""


class Clock:
    """Wall and CPU seconds of the parts of one examination, and some counts.

    CPU time says what a part costs whatever else the machine runs, wall time what it took
    under that load. Parts run side by side, so a part's CPU time is that of the threads
    that ran it (``time.thread_time``; BLAS is held to the calling thread)."""

    def __init__(self) -> None:
        self.parts: dict[str, dict[str, float]] = {}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, part: str, wall_s: float, cpu_s: float) -> None:
        with self._lock:
            entry = self.parts.setdefault(part, {"wall_s": 0.0, "cpu_s": 0.0})
            entry["wall_s"] += wall_s
            entry["cpu_s"] += cpu_s

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(part, time.perf_counter() - wall, time.thread_time() - cpu)

    def to_dict(self) -> dict[str, Any]:
        parts = {k: {m: round(v, 3) for m, v in p.items()} for k, p in self.parts.items()}
        return {"parts": parts, "counts": dict(self.counts)}


# ---------------------------------------------------------------- geometry of embeddings


def centred_unit(X: np.ndarray) -> np.ndarray:
    """Rows centred on their mean and scaled to unit length (cosine = dot product).

    Pooled CNN features are non-negative, so raw cosines of unrelated photos sit high;
    centring spreads them out (docs/benchmarks.md)."""
    X = np.asarray(X, dtype=np.float32)
    Z = X - X.mean(axis=0)
    Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)  # in place: one copy
    return Z


def _best(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the ``k`` largest entries of each row of ``S`` and those entries, best
    first (ties: the first column). ``S`` is used up (its best entries become -inf).

    ``k`` passes of ``argmax``: for the few neighbours wanted here five times faster than
    ``argpartition``, which took more time than the matrix product (docs/benchmarks.md)."""
    rows = np.arange(len(S))
    index = np.empty((len(S), k), dtype=np.int64)
    sims = np.empty((len(S), k), dtype=S.dtype)
    for rank in range(k):
        best = S.argmax(axis=1)
        index[:, rank], sims[:, rank] = best, S[rows, best]
        S[rows, best] = -np.inf
    return index, sims


def nearest_neighbours(
    Z: np.ndarray, k: int, among: np.ndarray | None = None, block: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar rows of ``Z[among]`` for every row of ``Z`` (itself excluded):
    indices into ``Z`` and cosines, best first."""
    pool = np.arange(len(Z)) if among is None else np.asarray(among)
    k = min(k, len(pool) - 1)
    index = np.zeros((len(Z), max(k, 0)), dtype=np.int64)
    sims = np.zeros((len(Z), max(k, 0)), dtype=np.float32)
    if k <= 0:
        return index, sims
    candidates = Z[pool]
    for start in range(0, len(Z), block):
        rows = np.arange(start, min(start + block, len(Z)))
        S = Z[rows] @ candidates.T
        S[pool[None, :] == rows[:, None]] = -np.inf  # never one's own neighbour
        top, sims[rows] = _best(S, k)
        index[rows] = pool[top]
    return index, sims


@dataclass
class Neighbours:
    """Nearest neighbours (cosine) of every row, and of some rows among themselves."""

    index: np.ndarray  # (n, k) indices into all rows, best first
    sims: np.ndarray
    within_index: np.ndarray  # (len(rows), k_within) indices into ``rows``, best first
    within_sims: np.ndarray


def neighbours_twice(
    Z: np.ndarray,
    k: int,
    rows: np.ndarray,
    k_within: int,
    block: int = 1024,
    exact_max: int | None = None,
) -> Neighbours:
    """:func:`nearest_neighbours` ``(Z, k)`` and ``(Z[rows], k_within)`` from one pass over
    the similarity matrix: the duplicate search and the kNN agreement of the labelled rows
    used to multiply two thirds of it twice (docs/benchmarks.md). Above ``exact_max`` rows
    (EXACT_SEARCH_MAX) the neighbours come from :func:`approximate_neighbours` instead."""
    n, rows = len(Z), np.asarray(rows, dtype=np.int64)
    k, k_within = max(min(k, n - 1), 0), max(min(k_within, len(rows) - 1), 0)
    if n > (EXACT_SEARCH_MAX if exact_max is None else exact_max) and k:
        return approximate_neighbours(Z, k, rows, k_within)
    index, sims = np.zeros((n, k), np.int64), np.zeros((n, k), np.float32)
    within_index = np.zeros((len(rows), k_within), np.int64)
    within_sims = np.zeros((len(rows), k_within), np.float32)
    position = np.full(n, -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    for start in range(0, n if k else 0, block):
        chunk = np.arange(start, min(start + block, n))
        S = Z[chunk] @ Z.T
        S[np.arange(len(chunk)), chunk] = -np.inf  # never one's own neighbour
        inside = position[chunk] >= 0
        if k_within and inside.any():
            at = position[chunk[inside]]
            # np.take keeps rows contiguous (``[:, rows]`` does not: argmax 30 times slower)
            within = np.take(S[inside], rows, axis=1)
            within_index[at], within_sims[at] = _best(within, k_within)
        index[chunk], sims[chunk] = _best(S, k)
    return Neighbours(index, sims, within_index, within_sims)


def _without_self(
    index: np.ndarray, sims: np.ndarray, own: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` results of each row other than the row itself (``own``); a result
    faiss could not fill (-1) repeats the row's best one."""
    keep = np.argsort(index == own[:, None], axis=1, kind="stable")[:, :k]
    index = np.take_along_axis(index, keep, axis=1)
    sims = np.take_along_axis(sims, keep, axis=1)
    missing = index < 0
    if missing.any():
        index = np.where(missing, index[:, :1], index)
        sims = np.where(missing, sims[:, :1], sims)
    return index, sims


def approximate_neighbours(
    Z: np.ndarray, k: int, rows: np.ndarray, k_within: int, seed: int = 0
) -> Neighbours:
    """:func:`neighbours_twice` from an inverted-file index (faiss ``IndexIVFFlat``, inner
    product): every row is compared with the rows of the IVF_PROBES cells nearest to it,
    about IVF_PROBES * sqrt(n) / IVF_CELLS_PER_ROOT of them, instead of all n (on 100,000
    rows some 30 times less work than the exact search; docs/benchmarks.md). The labelled
    rows' neighbours among themselves come from the same index, restricted to them."""
    import faiss

    n, d = Z.shape
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    cells = max(1, int(IVF_CELLS_PER_ROOT * math.sqrt(n)))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter, index.cp.seed = IVF_TRAIN_ITERATIONS, seed
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, min(n, IVF_TRAIN_PER_CELL * cells), replace=False))
    index.train(Z[sample])
    index.add(Z)
    index.nprobe = min(IVF_PROBES, cells)
    sims, found = index.search(Z, k + 1)
    nbr_index, nbr_sims = _without_self(found, sims, np.arange(n), k)
    within_index = np.zeros((len(rows), k_within), np.int64)
    within_sims = np.zeros((len(rows), k_within), np.float32)
    if k_within:
        selector = faiss.IDSelectorBatch(rows.astype(np.int64))  # alive for the search
        params = faiss.SearchParametersIVF()
        params.sel, params.nprobe = selector, index.nprobe
        sims, found = index.search(Z[rows], k_within + 1, params=params)
        position = np.full(n, -1, dtype=np.int64)
        position[rows] = np.arange(len(rows))
        found = np.where(found >= 0, position[np.maximum(found, 0)], -1)
        within_index, within_sims = _without_self(found, sims, np.arange(len(rows)), k_within)
    return Neighbours(nbr_index, nbr_sims, within_index, within_sims)


# ---------------------------------------------------------------- near duplicates


def candidate_pairs(
    nbr_index: np.ndarray, nbr_sims: np.ndarray, signatures: Sequence[Signature]
) -> set[tuple[int, int]]:
    """Pairs worth a geometric check: close in embedding space or in perceptual hash."""
    pairs: set[tuple[int, int]] = set()
    for i in range(len(nbr_index)):
        for rank, (j, sim) in enumerate(zip(nbr_index[i, :3], nbr_sims[i, :3], strict=True)):
            limit = CANDIDATE_COSINE if rank == 0 else SECOND_CANDIDATE_COSINE
            if sim >= limit:
                pairs.add((min(i, int(j)), max(i, int(j))))
    plain, mirror = hash_matrix(signatures)
    for i in range(len(plain) - 1):
        rest = slice(i + 1, None)
        bits = np.minimum(
            np.bitwise_count(plain[rest] ^ plain[i]), np.bitwise_count(mirror[rest] ^ plain[i])
        )
        for j in np.flatnonzero(bits <= CANDIDATE_HASH_BITS):
            pairs.add((i, i + 1 + int(j)))
    return pairs


def is_same_photo(a: Signature, b: Signature, cosine: float) -> bool:
    """Do two pictures show the same photo (resized, recompressed, cropped or flipped)?"""
    if hash_distance(a, b) <= SAME_HASH_BITS and cosine >= CANDIDATE_COSINE:
        return True
    return matching_points(a, b, enough=MIN_INLIERS) >= MIN_INLIERS


def near_duplicate_groups(
    Z: np.ndarray,
    raw: np.ndarray,
    signatures: Sequence[Signature],
    neighbours: Neighbours | None = None,
    clock: Clock | None = None,
) -> list[tuple[list[int], bool]]:
    """Groups of row indices that show one photo, each with whether all are exact copies
    (same pixels in other bytes). ``Z`` is :func:`centred_unit` of ``raw``; ``neighbours``
    (at least 3 of every row), when given, saves searching them again."""
    clock = clock or Clock()
    n = len(Z)
    if n < 2:
        return []
    if neighbours is None:
        neighbours = neighbours_twice(Z, 3, np.zeros(0, dtype=np.int64), 0)
    with clock("candidates"):
        candidates = sorted(candidate_pairs(neighbours.index, neighbours.sims, signatures))

    def check(pair: tuple[int, int]) -> tuple[bool, float]:
        started = time.thread_time()
        i, j = pair
        same = is_same_photo(signatures[i], signatures[j], float(Z[i] @ Z[j]))
        return same, time.thread_time() - started

    # faiss and OpenCV match and fit without the GIL: one thread per core checks pairs.
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        checked = list(pool.map(check, candidates, chunksize=64))
    clock.add("geometry", time.perf_counter() - started, sum(cpu for _, cpu in checked))
    clock.counts["candidate_pairs"] = len(candidates)
    same = [ok for ok, _ in checked]
    confirmed = [pair for pair, ok in zip(candidates, same, strict=True) if ok]
    norms = np.maximum(np.linalg.norm(raw, axis=1), 1e-12)  # not a unit copy of every row
    exact = {
        (i, j)
        for i, j in confirmed
        if float(raw[i] @ raw[j]) / float(norms[i] * norms[j]) >= EXACT_COSINE
        and hash_distance(signatures[i], signatures[j]) == 0
    }
    if not confirmed:
        return []
    rows, cols = zip(*confirmed, strict=True)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for i in sorted({i for pair in confirmed for i in pair}):
        members.setdefault(int(component[i]), []).append(i)
    # Each group's pairs found by its component: scanning every pair for every group (with
    # a list lookup each) was quadratic, hours for 100,000 images (docs/benchmarks.md).
    all_exact: dict[int, bool] = {}
    for pair in confirmed:
        c = int(component[pair[0]])
        all_exact[c] = all_exact.get(c, True) and pair in exact
    return [(group, all_exact[c]) for c, group in members.items()]


# ---------------------------------------------------------------- labels


def fold_count(y: np.ndarray) -> int:
    """Stratified folds the smallest class allows (at most MAX_FOLDS; 0 when under 2)."""
    smallest = int(np.bincount(y).min())
    return min(MAX_FOLDS, smallest) if smallest >= 2 else 0


def _logreg() -> LogisticRegression:
    return LogisticRegression(C=LOGREG_C, tol=LOGREG_TOL, max_iter=2000)


def classifier_features(X: np.ndarray, seed: int = 0) -> np.ndarray:
    """Standardized embeddings on their first principal axes (float32), for the probes."""
    Z = StandardScaler().fit_transform(np.asarray(X, dtype=np.float32))
    components = min(FEATURE_COMPONENTS, Z.shape[0] - 1, Z.shape[1])
    if components < Z.shape[1]:
        pca = PCA(components, svd_solver="randomized", random_state=seed)
        Z = pca.fit_transform(Z)
    return np.asarray(Z, dtype=np.float32)


def out_of_fold_probabilities(X: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Class probabilities of every row from a model that never saw it (stratified CV)."""
    folds = fold_count(y)
    if folds < 2:
        raise NotExaminable("every label needs at least 2 images for cross-validation")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return np.asarray(cross_val_predict(_logreg(), X, y, cv=cv, method="predict_proba"))


def rank_label_issues(y: np.ndarray, proba: np.ndarray) -> list[int]:
    """Rows cleanlab flags as likely mislabelled, most likely first."""
    # n_jobs=1: a Celery pool process is daemonic and may not start cleanlab's process pool.
    flagged = np.flatnonzero(find_label_issues(labels=y, pred_probs=proba, n_jobs=1))
    quality = get_label_quality_scores(labels=y, pred_probs=proba)
    return [int(i) for i in flagged[np.argsort(quality[flagged], kind="stable")]]


def balanced_accuracy(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    recalls = [float(np.mean(predicted[y == c] == c)) for c in range(n_classes) if (y == c).any()]
    return float(np.mean(recalls))


def knn_agreement(Z: np.ndarray, y: np.ndarray, k: int = NEIGHBOURS) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour vote (cosine) on the labels."""
    return knn_vote(nearest_neighbours(Z, k)[0], y)


def knn_vote(index: np.ndarray, y: np.ndarray) -> float:
    """:func:`knn_agreement` from the rows' neighbour table (indices into ``y``)."""
    if index.shape[1] == 0:
        return float("nan")
    votes = np.zeros((len(y), int(y.max()) + 1))
    for column in index.T:
        votes[np.arange(len(y)), y[column]] += 1
    return float(np.mean(votes.argmax(axis=1) == y))


def judge_domain_fit(
    y: np.ndarray, proba: np.ndarray, knn: float, classes: Sequence[str]
) -> dict[str, Any]:
    """How well the backbone's features separate these labels, in plain words."""
    n_classes = len(classes)
    predicted = proba.argmax(axis=1)
    accuracy = float(np.mean(predicted == y))
    balanced = balanced_accuracy(y, predicted, n_classes)
    counts = np.bincount(y, minlength=n_classes)
    chance = float(counts.max() / counts.sum())
    lift = (balanced - 1 / n_classes) / (1 - 1 / n_classes)
    per_label = int(np.median(counts))
    advice: list[str] = []
    if lift >= GOOD_LIFT:
        verdict = "good"
        message = (
            f"The backbone's features separate your labels well: cross-validated accuracy "
            f"{accuracy:.1%} against {chance:.1%} by always answering the largest label."
        )
        advice.append("A quick (linear) run should do well; fine-tuning may add a little.")
    else:
        verdict = "fair" if lift >= FAIR_LIFT else "poor"
        if verdict == "fair":
            message = (
                f"The backbone's features separate your labels only partly: cross-validated "
                f"accuracy {accuracy:.1%} against {chance:.1%} by chance."
            )
        else:
            message = (
                f"The backbone's features barely separate your labels: cross-validated "
                f"accuracy {accuracy:.1%} against {chance:.1%} by chance. These pictures may "
                "be unlike the everyday photos it learned from (scans, spectrograms, "
                "microscopy...)."
            )
        if per_label < 100:
            advice.append(f"Label more images: the median label has {per_label}.")
        advice.append(
            "Fine-tune the network (it adapts the features to your pictures; a GPU helps)."
        )
        advice.append("Try another backbone, e.g. a larger one from the zoo.")
        advice.append("Check the likely label errors below: wrong labels lower this score too.")
    return {
        "verdict": verdict,
        "message": message,
        "advice": advice,
        "cv_accuracy": accuracy,
        "cv_balanced_accuracy": balanced,
        "chance_accuracy": chance,
        "knn_agreement": knn,
        "lift_over_chance": float(lift),
        "n_labelled": len(y),
        "n_labels": n_classes,
    }


@dataclass
class LearningCurve:
    """Accuracy measured on a quarter, a half and all of the labels, and what it implies."""

    points: list[dict[str, float]]
    # Images per label at which doubling the labels would gain under MARGINAL_GAIN of
    # accuracy (a power law fitted to the error); None when it could not be measured.
    need: int | None = None
    plateau: bool = False  # accuracy did not grow with more labels


def learning_curve(
    X: np.ndarray, y: np.ndarray, full_accuracy: float, seed: int = 0
) -> LearningCurve:
    """How accuracy grows with the number of labels, and where more stop paying."""
    counts = np.bincount(y)
    rng = np.random.default_rng(seed)
    points = []
    for fraction in (0.25, 0.5):
        take = np.concatenate(
            [
                rng.choice(np.flatnonzero(y == c), max(2, round(n * fraction)), replace=False)
                for c, n in enumerate(counts)
            ]
        )
        if fold_count(y[take]) < 2 or len(take) >= len(y):
            continue
        proba = out_of_fold_probabilities(X[take], y[take], seed)
        accuracy = float(np.mean(proba.argmax(axis=1) == y[take]))
        points.append({"per_label": float(np.mean(np.bincount(y[take]))), "accuracy": accuracy})
    points.append({"per_label": float(counts.mean()), "accuracy": full_accuracy})
    if len(points) < 3:
        return LearningCurve(points)
    n = np.log([p["per_label"] for p in points])
    error = np.log([max(1 - p["accuracy"], 1e-3) for p in points])
    slope, intercept = np.polyfit(n, error, 1)
    b = -slope
    if b <= 0.05:
        return LearningCurve(points, int(counts.max()), plateau=True)
    a = math.exp(intercept)
    need = (a * (1 - 2 ** (-b)) / MARGINAL_GAIN) ** (1 / b)
    return LearningCurve(points, int(min(max(need, counts.min()), 50 * counts.max())))


def labels_needed(counts: dict[str, int], curve: LearningCurve) -> dict[str, Any]:
    """How many labelled images each label should have for the next run."""
    target = max(MIN_PER_LABEL, curve.need or 0)
    per_label = {
        name: {"have": have, "need": max(target, have), "add": max(0, target - have)}
        for name, have in counts.items()
    }
    measured = ", ".join(f"{p['accuracy']:.0%} at {p['per_label']:.0f}" for p in curve.points)
    if curve.need is None:
        basis = f"at least {MIN_PER_LABEL} per label, enough to measure accuracy"
    elif curve.plateau:
        basis = (
            f"accuracy no longer grows with more labels ({measured} per label), so this "
            "only evens out the labels"
        )
    else:
        basis = f"estimated from how accuracy grew with more labels ({measured} per label)"
    missing = {name: v["add"] for name, v in per_label.items() if v["add"]}
    if missing:
        listed = ", ".join(f"{n} more of “{name}”" for name, n in missing.items())
        message = f"For the next run, label about {target} images per label: {listed} ({basis})."
    else:
        message = f"Every label has enough images for the next run ({basis})."
    return {
        "per_label": target,
        "labels": per_label,
        "curve": curve.points,
        "plateau": curve.plateau,
        "message": message,
    }


def suggestion_order(
    proba: np.ndarray, Z_unlabelled: np.ndarray, Z_labelled: np.ndarray
) -> list[int]:
    """Unlabelled rows, most useful to label first: the first DIVERSE_PICKS greedily by
    uncertainty (1 - margin between the two likeliest labels) times distance to every
    labelled or already picked image; the rest by uncertainty."""
    top2 = np.sort(proba, axis=1)[:, -2:]
    uncertainty = 1.0 - (top2[:, 1] - top2[:, 0])
    if len(Z_labelled):
        closest = np.full(len(Z_unlabelled), -1.0, dtype=np.float32)
        for start in range(0, len(Z_labelled), 2048):
            sims = Z_unlabelled @ Z_labelled[start : start + 2048].T
            closest = np.maximum(closest, sims.max(axis=1))
    else:
        closest = np.full(len(Z_unlabelled), -1.0, dtype=np.float32)
    distance = (1.0 - closest) / 2.0
    picked: list[int] = []
    free = np.ones(len(proba), dtype=bool)
    for _ in range(min(DIVERSE_PICKS, len(proba))):
        score = np.where(free, uncertainty * distance, -np.inf)
        best = int(np.argmax(score))
        picked.append(best)
        free[best] = False
        distance = np.minimum(distance, (1.0 - Z_unlabelled @ Z_unlabelled[best]) / 2.0)
    rest = np.flatnonzero(free)
    return picked + [int(i) for i in rest[np.argsort(-uncertainty[rest], kind="stable")]]


# ---------------------------------------------------------------- the whole examination


def _count(n: int, one: str, many: str | None = None) -> str:
    """``1 image``, ``3 images``: the words agree with the number."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def _ids(pictures: Sequence[Picture], rows: Sequence[int]) -> list[int]:
    return [pictures[i].image_id for i in rows]


def _label_findings(counts: dict[str, int], unlabelled: int) -> list[Finding]:
    findings = []
    sizes = [n for n in counts.values() if n > 0]
    if len(sizes) >= 2 and max(sizes) / min(sizes) >= IMBALANCE_RATIO:
        big = max(counts, key=lambda k: counts[k])
        small = min((k for k in counts if counts[k]), key=lambda k: counts[k])
        ratio = counts[big] / counts[small]
        findings.append(
            Finding(
                "class_imbalance",
                "warning" if ratio < 10 else "error",
                len(counts),
                f"“{big}” has {ratio:.0f} times as many images as “{small}” "
                f"({counts[big]} against {counts[small]}).",
                "A model trained on lopsided labels leans towards the big one; accuracy then "
                "looks better than the small label's recall is. Training weights the labels, "
                "but more images of the small labels help most.",
                fixes=["label_more"],
            )
        )
    few = {name: n for name, n in counts.items() if n < FEW_IMAGES}
    if few:
        listed = ", ".join(f"“{name}” ({n})" for name, n in few.items())
        findings.append(
            Finding(
                "few_images",
                "error" if min(few.values()) < 2 else "warning",
                len(few),
                f"Labels with fewer than {FEW_IMAGES} images: {listed}.",
                "With a handful of examples a label's accuracy cannot be measured and the "
                "model may not learn it; a label needs 2 images just to be trained.",
                fixes=["label_more"],
            )
        )
    if unlabelled:
        findings.append(
            Finding(
                "unlabelled",
                "info",
                unlabelled,
                f"{_count(unlabelled, 'image has', 'images have')} no label yet; they are not used "
                "for training.",
                "Labelling them adds training data; the suggestions below say which to "
                "label first and what the current model thinks they are.",
                fixes=["accept_suggestions"],
            )
        )
    return findings


def _picture_findings(
    pictures: Sequence[Picture], signatures: Sequence[Signature | None], input_size: int
) -> list[Finding]:
    findings = []
    limit = int(input_size * SMALL_FRACTION)
    small = [i for i, p in enumerate(pictures) if min(p.width, p.height) < limit]
    if small:
        findings.append(
            Finding(
                "small_images",
                "warning",
                len(small),
                f"{_count(len(small), 'image is', 'images are')} smaller than {limit} px on their "
                "short side "
                f"(the backbone looks at {input_size} px).",
                "They are enlarged before the network sees them, so fine detail is missing; "
                "the model may do worse on them than on the others.",
                _ids(pictures, small[:MAX_EXAMPLES]),
                fixes=["delete"],
            )
        )
    known = [(i, s) for i, s in enumerate(signatures) if s is not None]
    gray = [i for i, s in known if s.is_grayscale]
    colour = [i for i, s in known if not s.is_grayscale]
    if gray and colour:
        minority = gray if len(gray) <= len(colour) else colour
        kind = "grayscale" if minority is gray else "colour"
        findings.append(
            Finding(
                "grayscale_mix",
                "warning",
                len(minority),
                f"{len(gray)} images are grayscale and {len(colour)} in colour; the "
                f"{len(minority)} {kind} ones are the exception.",
                "If one label's pictures are mostly grayscale, the model can learn “no "
                "colour” instead of the subject, and fail on colour pictures of it.",
                _ids(pictures, minority[:MAX_EXAMPLES]),
                fixes=["delete"],
            )
        )
    unreadable = [i for i, s in enumerate(signatures) if s is None]
    if unreadable:
        findings.append(
            Finding(
                "unreadable",
                "warning",
                len(unreadable),
                f"{_count(len(unreadable), 'image')} could not be read for the checks.",
                "They were left out of this report.",
                _ids(pictures, unreadable[:MAX_EXAMPLES]),
                fixes=["delete"],
            )
        )
    return findings


def _duplicate_findings(groups: Sequence[DuplicateGroup]) -> list[Finding]:
    findings = []
    leaking = [g for g in groups if g.across_splits]
    if leaking:
        copies = sum(len(g.image_ids) - 1 for g in leaking)
        findings.append(
            Finding(
                "leakage",
                "error",
                len(leaking),
                f"{_count(len(leaking), 'photo appears', 'photos appear')} in more than one split "
                f"({_count(copies, 'copy', 'copies')}): "
                "the model is checked on pictures it was trained on.",
                "Validation accuracy is then inflated: it measures memory, not how the "
                "model does on new pictures. Move each copy into its original's split, or "
                "keep one and delete the rest.",
                [i for g in leaking for i in g.image_ids][: MAX_EXAMPLES * 2],
                fixes=["move_copies", "keep_one"],
            )
        )
    conflicting = [g for g in groups if g.across_labels]
    if conflicting:
        findings.append(
            Finding(
                "conflicting_labels",
                "error",
                len(conflicting),
                f"{_count(len(conflicting), 'photo carries', 'photos carry')} different labels on "
                "their copies.",
                "The same picture cannot be two things; one of the labels is wrong, and "
                "training on both teaches the model nothing.",
                [i for g in conflicting for i in g.image_ids][: MAX_EXAMPLES * 2],
                fixes=["relabel", "keep_one"],
            )
        )
    redundant = [g for g in groups if not g.across_splits and not g.across_labels]
    if redundant:
        copies = sum(len(g.image_ids) - 1 for g in redundant)
        findings.append(
            Finding(
                "duplicates",
                "info",
                len(redundant),
                f"{_count(len(redundant), 'photo has', 'photos have')} "
                f"{_count(copies, 'near-identical copy', 'near-identical copies')} in the same "
                "label and split.",
                "Copies add no information and weigh those photos more than the others; "
                "keeping one of each is usually better.",
                [i for g in redundant for i in g.image_ids][: MAX_EXAMPLES * 2],
                fixes=["keep_one"],
            )
        )
    return findings


def examine(
    pictures: Sequence[Picture],
    embeddings: np.ndarray,
    signatures: Sequence[Signature | None],
    input_size: int,
    seed: int = 0,
    clock: Clock | None = None,
) -> Examination:
    """The data doctor's report for one project.

    ``embeddings`` has one row per picture (NaN rows: not readable); ``signatures`` one
    entry per picture (None: not readable). Raises NotExaminable when fewer than two
    labels have two readable images each. ``clock``, when given, receives the time of
    each part.
    """
    # One BLAS thread: on a shared 2-core machine OpenBLAS's two threads made one logistic
    # regression ten times slower, not faster (docs/benchmarks.md).
    with threadpool_limits(1):
        return _examine(pictures, embeddings, signatures, input_size, seed, clock or Clock())


def _examine(
    pictures: Sequence[Picture],
    embeddings: np.ndarray,
    signatures: Sequence[Signature | None],
    input_size: int,
    seed: int,
    clock: Clock,
) -> Examination:
    X_all = np.asarray(embeddings, dtype=np.float32)
    if len(pictures) == 0:
        raise NotExaminable("There are no images to examine.")
    readable = [
        i
        for i in range(len(pictures))
        if signatures[i] is not None and not np.isnan(X_all[i]).any()
    ]
    labelled_counts = Counter(p.label for p in pictures if p.label is not None)
    usable = Counter(str(pictures[i].label) for i in readable if pictures[i].label is not None)
    classes = sorted(name for name, n in usable.items() if n >= 2)
    if len(classes) < 2:
        raise NotExaminable(
            "The doctor compares labels with each other, so it needs at least 2 labels with "
            "2 or more images each."
        )
    X = X_all if len(readable) == len(X_all) else X_all[readable]
    sigs = [s for s in (signatures[i] for i in readable) if s is not None]
    pics = [pictures[i] for i in readable]
    class_index = {name: c for c, name in enumerate(classes)}
    train_rows = np.array([i for i, p in enumerate(pics) if p.label in class_index])
    y = np.array([class_index[pics[i].label] for i in train_rows])  # type: ignore[index]
    unlabelled_rows = np.array([i for i, p in enumerate(pics) if p.label is None], dtype=int)

    # Three strands side by side: the label probes (PCA, cross-validated logistic
    # regressions: BLAS and lbfgs), the similarity search, then the geometric checks of near
    # duplicates (faiss and OpenCV without the GIL, one thread per core). On a quiet machine
    # both cores work; on a loaded one the report gets the share of its busy threads
    # (docs/benchmarks.md). Every sklearn fit stays in one strand (warning filters are
    # process-wide).
    with clock("features"):
        Z = centred_unit(X)
    strands = ThreadPoolExecutor(max_workers=2)
    try:
        probes = strands.submit(_label_probes, X, Z, train_rows, unlabelled_rows, y, seed, clock)
        with clock("neighbours"):
            neighbours = neighbours_twice(Z, 3, train_rows, NEIGHBOURS)
        duplicates = strands.submit(near_duplicate_groups, Z, X, sigs, neighbours, clock)
        proba, ranked, p_unlabelled, by_use, curve = probes.result()
        groups = _duplicate_groups(pics, duplicates.result())
    finally:
        strands.shutdown(wait=True)

    issues = [
        LabelIssue(
            image_id=pics[train_rows[r]].image_id,
            given_label=classes[y[r]],
            suggested_label=classes[int(np.argmax(proba[r]))],
            score=float(1.0 - proba[r, y[r]]),
            confidence=float(proba[r].max()),
        )
        for r in ranked
    ]
    fit = judge_domain_fit(y, proba, knn_vote(neighbours.within_index, y), classes)
    suggestions = [
        Suggestion(
            image_id=pics[unlabelled_rows[r]].image_id,
            suggested_label=classes[int(np.argmax(p_unlabelled[r]))],
            confidence=float(p_unlabelled[r].max()),
        )
        for r in by_use
    ]

    findings = _duplicate_findings(groups)
    if issues:
        findings.append(
            Finding(
                "label_errors",
                "warning",
                len(issues),
                f"{_count(len(issues), 'image looks', 'images look')} mislabelled: the model "
                "trained without them is confident they belong to another label.",
                "Wrong labels teach the model wrong answers and make its measured accuracy "
                "lower (or, in validation, wrong). Review them one by one.",
                [i.image_id for i in issues[:MAX_EXAMPLES]],
                fixes=["review"],
            )
        )
    fit_severity: dict[str, Severity] = {"good": "info", "fair": "warning", "poor": "error"}
    findings.append(
        Finding(
            "domain_fit",
            fit_severity[fit["verdict"]],
            len(y),
            fit["message"],
            "Transfer learning reuses features learned on everyday photos; how well they "
            "separate your labels decides what a quick run can reach. " + " ".join(fit["advice"]),
        )
    )
    outliers = _outliers(Z, train_rows, y)
    if outliers:
        findings.append(
            Finding(
                "outliers",
                "info",
                len(outliers),
                f"{_count(len(outliers), 'image is', 'images are')} far from every label's other "
                "images.",
                "They may be off-topic, corrupted or mislabelled pictures; or rare views the "
                "model needs more examples of.",
                _ids(pics, outliers[:MAX_EXAMPLES]),
                fixes=["delete", "relabel"],
            )
        )
    findings += _label_findings(dict(labelled_counts), sum(p.label is None for p in pictures))
    findings += _picture_findings(pictures, signatures, input_size)
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order[f.severity])

    return Examination(
        findings=findings,
        label_issues=issues,
        duplicates=groups,
        domain_fit=fit,
        suggestions=suggestions,
        labels_needed=labels_needed(dict(labelled_counts), curve),
        estimate={
            "accuracy": fit["cv_accuracy"],
            "balanced_accuracy": fit["cv_balanced_accuracy"],
            "n_labelled": len(y),
        },
        stats={
            "images": len(pictures),
            "examined": len(pics),
            "labelled": sum(labelled_counts.values()),
            "unlabelled": sum(p.label is None for p in pictures),
            "labels": dict(labelled_counts),
        },
    )


def _label_probes(
    X: np.ndarray,
    Z: np.ndarray,
    train_rows: np.ndarray,
    unlabelled_rows: np.ndarray,
    y: np.ndarray,
    seed: int,
    clock: Clock,
) -> tuple[np.ndarray, list[int], np.ndarray, list[int], LearningCurve]:
    """Out-of-fold probabilities and cleanlab's ranking of the labelled rows, the unlabelled
    rows' probabilities and most useful order, and the learning curve."""
    with clock("features"):
        F = classifier_features(X, seed)
    with clock("label_errors"):
        proba = out_of_fold_probabilities(F[train_rows], y, seed)
        ranked = rank_label_issues(y, proba)
    p_unlabelled = np.zeros((0, proba.shape[1]))
    by_use: list[int] = []
    if len(unlabelled_rows):
        with clock("suggestions"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = _logreg().fit(F[train_rows], y)
            p_unlabelled = model.predict_proba(F[unlabelled_rows])
            by_use = suggestion_order(p_unlabelled, Z[unlabelled_rows], Z[train_rows])
    with clock("learning_curve"):
        accuracy = float(np.mean(proba.argmax(axis=1) == y))  # the domain fit's cv_accuracy
        curve = learning_curve(F[train_rows], y, accuracy, seed)
    return proba, ranked, p_unlabelled, by_use, curve


def _duplicate_groups(
    pics: Sequence[Picture], found: list[tuple[list[int], bool]]
) -> list[DuplicateGroup]:
    groups = []
    for rows, exact in found:
        labels = [pics[i].label for i in rows]
        splits = [pics[i].split for i in rows]
        groups.append(
            DuplicateGroup(
                image_ids=_ids(pics, rows),
                kind="exact" if exact else "near",
                across_splits=len({s for s in splits if s}) > 1,
                across_labels=len({lab for lab in labels if lab}) > 1,
                labels=labels,
                splits=splits,
            )
        )
    return groups


def _outliers(Z: np.ndarray, train_rows: np.ndarray, y: np.ndarray) -> list[int]:
    """Rows far from every label's centroid (robust z-score below -OUTLIER_Z)."""
    if len(train_rows) < OUTLIER_MIN_LABELLED:
        return []
    centroids = np.stack([Z[train_rows[y == c]].mean(axis=0) for c in range(int(y.max()) + 1)])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    closeness = (Z @ centroids.T).max(axis=1)
    reference = closeness[train_rows]
    median = float(np.median(reference))
    spread = 1.4826 * float(np.median(np.abs(reference - median))) or 1e-6
    z = (closeness - median) / spread
    rows = np.flatnonzero(z < -OUTLIER_Z)
    return [int(i) for i in rows[np.argsort(z[rows])][:MAX_OUTLIERS]]
