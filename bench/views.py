"""Which embedding views and feature transforms help Auto: measured on the datasets, not
guessed.

For each dataset (``bench/accuracy.py``'s loading and splits) and each bundled backbone,
embeds through ``embed_images`` and the shared cache: the default view (the backbone's own
resolution and center crop), its mirror, and the same two at a higher resolution (the
crop fraction kept, ``--scale`` times the input size, rounded to 32 px). Then fits Auto's
combined probe (``worker/ml/ensemble.fit_ensemble``) on named feature sets:

- ``d`` default, ``dF`` default flip-averaged (these two are Auto's candidates today);
- ``h``/``hF`` the higher resolution instead, ``m``/``mF`` the mean of both resolutions;
- ``s:`` prefix: the same after a signed square root of every feature (power normalisation).

and prints per set the kept candidate's out-of-fold log loss and its val accuracy, then
for each *selection* (sets Auto could choose among) what Auto would keep (lowest
out-of-fold log loss over all the sets' candidates) and its val accuracy, beside the best
single-backbone reference (sklearn ``LogisticRegression()`` on the default view).

Run: ``PYTHONPATH=$PWD .venv/bin/python bench/views.py --only hymenoptera``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from bench.accuracy import BACKBONES, DATASETS, Dataset, load_dataset

SELECTIONS = {
    "today (d, dF)": ("d", "dF"),
    "high resolution (h, hF)": ("h", "hF"),
    "both resolutions averaged (m, mF)": ("m", "mF"),
    "today + high resolution": ("d", "dF", "h", "hF"),
    "today, power-normalised": ("s:d", "s:dF"),
    "today + power-normalised": ("d", "dF", "s:d", "s:dF"),
    "averaged resolutions, power-normalised": ("s:m", "s:mF"),
}


def featurize(ds: Dataset, cache: Path, scale: float) -> dict[str, dict[str, np.ndarray]]:
    """view -> backbone -> (N, D) embeddings, train rows then val rows."""
    from worker.ml.features import embed_images

    items = [(sha, path) for sha, path, _ in ds.train + ds.val]
    out: dict[str, dict[str, np.ndarray]] = {v: {} for v in ("d", "df", "h", "hf")}
    for b in BACKBONES:
        for name, hflip, s in (("d", False, 1.0), ("df", True, 1.0), ("h", False, scale),
                               ("hf", True, scale)):  # fmt: skip
            r = embed_images(items, b, cache_dir=cache, offline=True, hflip=hflip, scale=s)
            out[name][b] = r.embeddings
            print(
                f"  {ds.name} {b} {name} ({r.preprocess.input_size} px): "
                f"{r.n_computed} computed, {r.n_cached} cached, {r.seconds:.1f} s",
                flush=True,
            )
    return out


def signed_sqrt(X: np.ndarray) -> np.ndarray:
    return np.sign(X) * np.sqrt(np.abs(X))


def feature_sets(v: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    sets = {
        "d": v["d"],
        "dF": {b: (v["d"][b] + v["df"][b]) / 2 for b in BACKBONES},
        "h": v["h"],
        "hF": {b: (v["h"][b] + v["hf"][b]) / 2 for b in BACKBONES},
        "m": {b: (v["d"][b] + v["h"][b]) / 2 for b in BACKBONES},
        "mF": {b: (v["d"][b] + v["df"][b] + v["h"][b] + v["hf"][b]) / 4 for b in BACKBONES},
    }
    for name in ("d", "dF", "m", "mF"):
        sets[f"s:{name}"] = {b: signed_sqrt(X) for b, X in sets[name].items()}
    return sets


def main() -> int:
    from sklearn.linear_model import LogisticRegression

    from worker.ml.ensemble import fit_ensemble

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/work/cache-bench"))
    parser.add_argument("--only", nargs="*", help="dataset names (default: all)")
    parser.add_argument("--scale", type=float, default=1.25)
    parser.add_argument("--sets", help="comma-separated feature sets (default: all)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    for folder in sorted(p for p in DATASETS.iterdir() if p.is_dir()):
        if args.only and folder.name not in args.only:
            continue
        ds = load_dataset(folder)
        print(f"{ds.name}: {len(ds.train)} train, {len(ds.val)} val", flush=True)
        views = featurize(ds, args.cache, args.scale)
        n = len(ds.train)
        valid = np.ones(n + len(ds.val), dtype=bool)
        for per_b in views.values():
            for X in per_b.values():
                valid &= ~np.isnan(X).any(axis=1)
        tr, va = valid[:n], valid[n:]
        y_tr = np.array([lab for _, _, lab in ds.train], dtype=object)[tr]
        y_va = np.array([lab for _, _, lab in ds.val], dtype=object)[va]
        refs = {}
        for b in BACKBONES:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = LogisticRegression().fit(views["d"][b][:n][tr], y_tr)
            refs[b] = float(np.mean(model.predict(views["d"][b][n:][va]) == y_va))
        best_ref = max(refs.values())
        print("  reference " + ", ".join(f"{b[-5:]} {100 * a:.1f}" for b, a in refs.items()))
        sets = feature_sets(views)
        wanted = args.sets.split(",") if args.sets else list(sets)
        kept: dict[str, tuple[str, float, float, float]] = {}  # set -> (cand, ll, cv acc, val)
        for name in wanted:
            started = time.process_time()
            feats = sets[name]
            e = fit_ensemble({b: X[:n][tr] for b, X in feats.items()}, list(y_tr), seed=0)
            proba = e.predict_proba({b: X[n:][va] for b, X in feats.items()})
            acc = float(np.mean(np.asarray(e.classes, dtype=object)[proba.argmax(1)] == y_va))
            kept[name] = (e.chosen.name, e.chosen.cv_log_loss, e.chosen.cv_accuracy, acc)
            print(
                f"  set {name:6s} kept {e.chosen.name:28s} CV ll {e.chosen.cv_log_loss:.4f} "
                f"CV acc {100 * e.chosen.cv_accuracy:.1f} val {100 * acc:.1f} "
                f"({round(acc * len(y_va))}/{len(y_va)}; "
                f"{time.process_time() - started:.1f} s CPU)",
                flush=True,
            )
        for sel, names in SELECTIONS.items():
            if not all(s in kept for s in names):
                continue
            best = min(names, key=lambda s: (kept[s][1], names.index(s)))
            cand, ll, _, acc = kept[best]
            print(
                f"  selection {sel:40s} -> {best}: {cand}, CV ll {ll:.4f}, val {100 * acc:.1f} "
                f"({100 * (acc - best_ref):+.1f} vs best reference {100 * best_ref:.1f})",
                flush=True,
            )
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
