"""Accuracy of our heads and of Auto against a plain scikit-learn reference, on every
dataset in ``../shared/datasets/``.

For each dataset (its own train/val split; a dataset without one gets a fixed stratified
80/20 split, said so in the output) and each bundled backbone: scikit-learn's
``LogisticRegression()`` with its defaults on the raw embeddings (the reference), each head
of ours (``train_head`` with logreg, svm, mlp) on the embeddings at the backbone's own input
size, and Auto (worker/ml/ensemble.py over all three backbones, the function the Auto mode
runs, on the embeddings at ``ensemble.SCALE`` times that size, as the Auto mode makes them).
Prints one table per dataset, the mean
over datasets and the wall time of each mode, and writes them as markdown with the CPU
model, date and load average.

Embeddings come from ``embed_images`` with a shared cache (``--cache``), so each image is
featurized once per backbone and view (plain and mirrored, at the backbone's own size and
at Auto's).

Run: ``PYTHONPATH=$PWD .venv/bin/python bench/accuracy.py [--out FILE] [--featurize-only]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class Dataset:
    name: str
    train: list[tuple[str, Path, str]]  # (sha256, path, label)
    val: list[tuple[str, Path, str]]
    split_note: str


@dataclass
class Features:
    """Embeddings of one dataset per backbone and view, rows in train then val order: at the
    backbone's own input size (``plain``, ``flip``) and at Auto's (``auto_*``)."""

    plain: dict[str, np.ndarray] = field(default_factory=dict)
    flip: dict[str, np.ndarray] = field(default_factory=dict)
    auto_plain: dict[str, np.ndarray] = field(default_factory=dict)
    auto_flip: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _files(folder: Path) -> list[tuple[str, Path, str]]:
    rows = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            rows.append((hashlib.sha256(path.read_bytes()).hexdigest(), path, path.parent.name))
    return rows


def load_dataset(folder: Path) -> Dataset:
    if (folder / "train").is_dir() and (folder / "val").is_dir():
        return Dataset(folder.name, _files(folder / "train"), _files(folder / "val"),
                       "its own train/val split")  # fmt: skip
    from worker.ml.evaluate import stratified_split

    rows = _files(folder)
    split = stratified_split([r[0] for r in rows], [r[2] for r in rows], 0.2, seed=0)
    return Dataset(
        folder.name,
        [r for r in rows if split[r[0]] == "train"],
        [r for r in rows if split[r[0]] == "val"],
        "no split given: a fixed stratified 80/20 split (worker.ml.evaluate, seed 0)",
    )


def featurize(ds: Dataset, cache: Path) -> Features:
    from worker.ml.ensemble import SCALE
    from worker.ml.features import embed_images

    items = [(sha, path) for sha, path, _ in ds.train + ds.val]
    out = Features()
    views = (
        (1.0, False, out.plain),
        (1.0, True, out.flip),
        (SCALE, False, out.auto_plain),
        (SCALE, True, out.auto_flip),
    )
    for backbone in BACKBONES:
        for scale, hflip, target in views:
            result = embed_images(
                items, backbone, cache_dir=cache, offline=True, hflip=hflip, scale=scale
            )
            target[backbone] = result.embeddings
            size = result.preprocess.input_size
            out.seconds[f"{backbone}-{size}{'-flip' if hflip else ''}"] = result.seconds
            print(
                f"  {ds.name} {backbone} {size} px {'flip' if hflip else 'plain'}: "
                f"{result.n_computed} computed, {result.n_cached} cached, "
                f"{result.seconds:.1f} s",
                flush=True,
            )
    return out


@dataclass
class Result:
    """Validation accuracy of every mode on one dataset, and the seconds each took."""

    accuracy: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    auto_chosen: str = ""
    auto_candidates: list[tuple[str, float, float, float]] = field(default_factory=list)


def evaluate(ds: Dataset, feats: Features, heads: tuple[str, ...]) -> Result:
    """Reference, our heads and Auto on one dataset: fit on train, score on val."""
    from sklearn.linear_model import LogisticRegression

    from worker.ml.ensemble import fit_ensemble, mixture_proba
    from worker.ml.heads import KINDS, HeadKind, train_head

    n = len(ds.train)
    y_train = np.array([label for _, _, label in ds.train], dtype=object)
    y_val = np.array([label for _, _, label in ds.val], dtype=object)
    valid = np.ones(len(ds.train) + len(ds.val), dtype=bool)
    every = (feats.plain, feats.flip, feats.auto_plain, feats.auto_flip)
    for X in (X for views in every for X in views.values()):
        valid &= ~np.isnan(X).any(axis=1)  # an unreadable file (hymenoptera's GIF) is left out
    tr, va = valid[:n], valid[n:]
    y_train, y_val = y_train[tr], y_val[va]
    plain_tr = {b: X[:n][tr] for b, X in feats.plain.items()}
    plain_va = {b: X[n:][va] for b, X in feats.plain.items()}
    auto_tr = {b: X[:n][tr] for b, X in feats.auto_plain.items()}
    auto_va = {b: X[n:][va] for b, X in feats.auto_plain.items()}
    flip_tr = {b: X[:n][tr] for b, X in feats.auto_flip.items()}
    flip_va = {b: X[n:][va] for b, X in feats.auto_flip.items()}
    out = Result()

    def record(name: str, started: float, predicted: np.ndarray) -> None:
        out.seconds[name] = time.perf_counter() - started
        out.accuracy[name] = float(np.mean(predicted == y_val))

    for b in BACKBONES:
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the defaults' lbfgs may stop at 100 iterations
            reference = LogisticRegression().fit(plain_tr[b], y_train)
        record(f"reference {b}", started, reference.predict(plain_va[b]))
        for kind in (k for k in KINDS if k in heads):
            started = time.perf_counter()
            head = train_head(plain_tr[b], y_train, cast(HeadKind, kind), seed=0)
            record(f"{kind} {b}", started, head.predict(plain_va[b]))

    started = time.perf_counter()
    ensemble = fit_ensemble(auto_tr, list(y_train), flip_tr, seed=0, fit_all=True)
    classes = np.asarray(ensemble.classes, dtype=object)
    record("auto", started, classes[ensemble.predict_proba(auto_va, flip_va).argmax(axis=1)])
    out.auto_chosen = ensemble.chosen.name
    for c in ensemble.candidates:
        members = ensemble.alternatives[c.name]
        proba = mixture_proba(members, auto_va, flip_va if c.flip else None)
        val = float(np.mean(classes[proba.argmax(axis=1)] == y_val))
        out.auto_candidates.append((c.name, c.cv_accuracy, c.cv_log_loss, val))
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def machine() -> str:
    model = "unknown CPU"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        model = platform.processor() or model
    return f"{model}, {os.cpu_count()} cores"


def report(
    datasets: list[Dataset],
    results: list[Result],
    feat_s: float,
    loads: list[float],
    heads: tuple[str, ...],
) -> str:
    """The markdown tables: one per dataset, then the means and the wall times."""
    from worker.ml.ensemble import SCALE

    lines: list[str] = []
    modes = ["reference", *heads]
    for ds, r in zip(datasets, results, strict=True):
        lines += [
            f"#### {ds.name} ({len(ds.train)} train / {len(ds.val)} val, {ds.split_note})",
            "",
            "| val accuracy % | "
            + " | ".join(b.removeprefix("tf_efficientnet_") for b in BACKBONES)
            + " |",
            "|---|" + "---:|" * len(BACKBONES),
        ]
        for mode in modes:
            name = "sklearn LogisticRegression() (reference)" if mode == "reference" else mode
            cells = [_pct(r.accuracy[f"{mode} {b}"]) for b in BACKBONES]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        best_ref = max(r.accuracy[f"reference {b}"] for b in BACKBONES)
        lines += [
            "",
            f"Auto: **{_pct(r.accuracy['auto'])} %** (kept: {r.auto_chosen}; best single-backbone "
            f"reference {_pct(best_ref)} %, difference {100 * (r.accuracy['auto'] - best_ref):+.1f}"
            " points).",
            "",
            "| Auto candidate | CV accuracy % | CV log loss | val accuracy % |",
            "|---|---:|---:|---:|",
        ]
        for name, cv_acc, cv_ll, val in r.auto_candidates:
            mark = " (kept)" if name == r.auto_chosen else ""
            lines.append(f"| {name}{mark} | {_pct(cv_acc)} | {cv_ll:.3f} | {_pct(val)} |")
        lines.append("")

    def mean(key: str) -> float:
        return float(np.mean([r.accuracy[key] for r in results]))

    best_refs = [max(r.accuracy[f"reference {b}"] for b in BACKBONES) for r in results]
    lines += [
        "#### Mean over the datasets",
        "",
        "| mode | mean val accuracy % | wall time s (all datasets) |",
        "|---|---:|---:|",
    ]
    for mode in modes:
        for b in BACKBONES:
            key = f"{mode} {b}"
            seconds = sum(r.seconds[key] for r in results)
            label = "reference" if mode == "reference" else mode
            lines.append(f"| {label} {b} | {_pct(mean(key))} | {seconds:.1f} |")
    auto_s = sum(r.seconds["auto"] for r in results)
    lines += [
        f"| best single-backbone reference per dataset | {_pct(float(np.mean(best_refs)))} | |",
        f"| **Auto** (three backbones at {SCALE:g}x their input size) "
        f"| **{_pct(mean('auto'))}** | {auto_s:.1f} |",
        "",
        f"Auto minus the best single-backbone reference, mean over datasets: "
        f"{100 * (mean('auto') - float(np.mean(best_refs))):+.2f} points; per dataset: "
        + ", ".join(
            f"{ds.name} {100 * (r.accuracy['auto'] - b):+.1f}"
            for ds, r, b in zip(datasets, results, best_refs, strict=True)
        )
        + ".",
        "",
        "Featurization (every backbone, plain and mirrored, at its own size and Auto's, "
        f"through the cache): {feat_s:.0f} s. "
        "Wall times are for fitting and predicting only; Auto's include its cross-validation. "
        f"Load average during the run: {' / '.join(f'{x:.1f}' for x in loads)} (start / end).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/work/cache-bench"))
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--featurize-only", action="store_true")
    parser.add_argument("--only", nargs="*", help="dataset names (default: all)")
    parser.add_argument(
        "--heads", default="logreg,svm,mlp", help="our heads to measure (comma-separated)"
    )
    args = parser.parse_args()
    loads = [os.getloadavg()[0]]
    heads = tuple(h for h in args.heads.split(",") if h)
    started = time.perf_counter()
    datasets, results = [], []
    feat_s = 0.0
    for folder in sorted(p for p in DATASETS.iterdir() if p.is_dir()):
        if args.only and folder.name not in args.only:
            continue
        ds = load_dataset(folder)
        print(f"{ds.name}: {len(ds.train)} train, {len(ds.val)} val ({ds.split_note})", flush=True)
        t = time.perf_counter()
        feats = featurize(ds, args.cache)
        feat_s += time.perf_counter() - t
        if args.featurize_only:
            continue
        result = evaluate(ds, feats, heads)
        print(
            "  "
            + ", ".join(f"{k} {_pct(v)}" for k, v in result.accuracy.items())
            + f"; auto kept {result.auto_chosen} in {result.seconds['auto']:.1f} s",
            flush=True,
        )
        datasets.append(ds)
        results.append(result)
    if args.featurize_only:
        return 0
    loads.append(os.getloadavg()[0])
    header = (
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; "
        f"whole benchmark {time.perf_counter() - started:.0f} s.\n\n"
    )
    text = header + report(datasets, results, feat_s, loads, heads)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
