"""Time of the data doctor's report over 5,000 images once their embeddings are cached.

The images: every picture of ``../shared/datasets`` (hymenoptera, rsscn7, pbc_blood_cells,
dtd_textures; labelled ``<set>/<class>``, their own splits), topped up to ``--images`` with
half-area crops of them (which the doctor should find as near duplicates); every fifth
image is left unlabelled. Signatures are computed from 256 px thumbnails made by the
upload path's own ``read_picture``, as in production.

Printed side by side, part by part, in wall and CPU (process) seconds: the baseline (the
doctor as it was at ``--baseline-rev``, run from that revision's files in a child process
on the same data) and ours. The machine is shared, so the load average is printed too:
under load the CPU seconds say what a part costs, the wall seconds what it took. Also
printed: the first report (signatures computed), and checking every pair geometrically
(extrapolated from timed pairs) instead of only embedding neighbours.

Run: ``.venv/bin/python bench/doctor.py [--images 5000] [--cache-dir DIR]``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from backend.images.decode import read_picture
from worker.ml import doctor
from worker.ml.doctor import Picture
from worker.ml.features import embed_images
from worker.ml.signatures import matching_points, picture_signatures

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
TARGET_S = 30.0
SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif"}


def real_pictures() -> list[tuple[Path, str, str]]:
    """(path, label, split) of every picture of the shared datasets."""
    found = []
    for path in sorted(DATASETS.glob("*/*/*/*")):
        if path.suffix.lower() in SUFFIXES:
            split, label, dataset = path.parent.parent.name, path.parent.name, path.parts[-4]
            found.append((path, f"{dataset}/{label}", split))
    return found


def crop_of(path: Path, seed: int, out: Path) -> None:
    rng = random.Random(seed)
    with Image.open(path) as image:
        picture = image.convert("RGB")
    w, h = picture.size
    cw, ch = round(w * 0.71), round(h * 0.71)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    picture.crop((x, y, x + cw, y + ch)).save(out, "JPEG", quality=90)


def build(work: Path, n: int) -> list[tuple[str, Path, Path, str | None, str, int, int]]:
    """(sha, file, thumbnail, label, split, width, height) of ``n`` pictures in ``work``."""
    base = real_pictures()
    pictures = list(base)
    for k in range(max(0, n - len(base))):
        path, label, split = base[k % len(base)]
        out = work / "crops" / f"{k}.jpg"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            crop_of(path, k, out)
        pictures.append((out, label, split))
    sizes_file = work / "sizes.json"  # sha -> (width, height): decoding 5,000 takes minutes
    sizes = json.loads(sizes_file.read_text()) if sizes_file.exists() else {}
    rows = []
    for k, (path, label, split) in enumerate(pictures[:n]):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        thumb = work / "thumbnails" / f"{sha}.jpg"
        if sha not in sizes or not thumb.exists():
            picture = read_picture(path, 64_000_000)
            thumb.parent.mkdir(parents=True, exist_ok=True)
            thumb.write_bytes(picture.thumbnail_jpeg)
            sizes[sha] = (picture.width, picture.height)
        width, height = sizes[sha]
        rows.append((sha, path, thumb, None if k % 5 == 4 else label, split, width, height))
    sizes_file.write_text(json.dumps(sizes))
    return rows


BASELINE_REV = "919cda3"  # the doctor before the faiss matcher and the shared neighbour pass
PARTS = (
    "features",
    "neighbours",
    "candidates",
    "geometry",
    "label_errors",
    "suggestions",
    "learning_curve",
)


def _timed(parts: dict[str, dict[str, float]], name: str, call: Any) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    parts[name] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    return result


def baseline_parts(data: Path) -> dict[str, Any]:
    """Time the doctor of an older revision (importable as ``worker.ml``) part by part, with
    its own public functions, the way its ``examine`` called them; then its whole report."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    with data.open("rb") as file:
        pictures, embeddings, thumbs, sig_dir, input_size = pickle.load(file)
    found, _ = picture_signatures(thumbs, sig_dir)
    signatures = [s for s in found if s is not None]
    if len(signatures) != len(pictures):  # the parts below assume every picture readable
        raise SystemExit("the baseline needs every picture readable")
    parts: dict[str, dict[str, float]] = {}
    with threadpool_limits(1):
        X = np.asarray(embeddings, dtype=np.float32)
        Z, F = _timed(
            parts, "features", lambda: (doctor.centred_unit(X), doctor.classifier_features(X))
        )
        classes = sorted({p.label for p in pictures if p.label})
        index = {name: c for c, name in enumerate(classes)}
        train = np.array([i for i, p in enumerate(pictures) if p.label])
        unlabelled = np.array([i for i, p in enumerate(pictures) if not p.label])
        y = np.array([index[pictures[i].label] for i in train])
        nbr = _timed(parts, "neighbours", lambda: doctor.nearest_neighbours(Z, 3))
        pairs = _timed(
            parts, "candidates", lambda: sorted(doctor.candidate_pairs(nbr[0], nbr[1], signatures))
        )

        def check(pair: tuple[int, int]) -> bool:
            i, j = pair
            return doctor.is_same_photo(signatures[i], signatures[j], float(Z[i] @ Z[j]))

        def geometry() -> list[bool]:
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                return list(pool.map(check, pairs, chunksize=64))

        _timed(parts, "geometry", geometry)

        def label_errors() -> Any:
            proba = doctor.out_of_fold_probabilities(F[train], y)
            doctor.rank_label_issues(y, proba)
            return proba

        proba = _timed(parts, "label_errors", label_errors)
        # Its kNN agreement searched the labelled rows' neighbours a second time.
        _timed(parts, "knn", lambda: doctor.knn_agreement(Z[train], y))
        knn = parts.pop("knn")
        parts["neighbours"] = {m: parts["neighbours"][m] + knn[m] for m in knn}

        def suggestions() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = doctor._logreg().fit(F[train], y)
            p = model.predict_proba(F[unlabelled])
            doctor.suggestion_order(p, Z[unlabelled], Z[train])

        _timed(parts, "suggestions", suggestions)
        accuracy = float(np.mean(proba.argmax(axis=1) == y))
        _timed(parts, "learning_curve", lambda: doctor.learning_curve(F[train], y, accuracy))
    _timed(parts, "report", lambda: doctor.examine(pictures, embeddings, signatures, input_size))
    return {"parts": parts, "pairs": len(pairs)}


def run_baseline(rev: str, data: Path, tmp: Path) -> dict[str, Any]:
    """:func:`baseline_parts` in a child process that imports ``rev``'s ``worker`` and
    ``backend`` packages (exported with ``git archive``) and this file's current code."""
    root = Path(__file__).resolve().parents[1]
    tree = tmp / f"rev-{rev}"
    tree.mkdir(exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", rev, "worker", "backend"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    out = tmp / "baseline.json"
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2]);"
        "from pathlib import Path; import doctor as bench;"
        "json.dump(bench.baseline_parts(Path(sys.argv[3])), open(sys.argv[4], 'w'))"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(tree), str(root / "bench"), str(data), str(out)],
        check=True,
        env={**os.environ, "PYTHONPATH": str(tree)},
    )
    return json.loads(out.read_text())


def _row(name: str, base: dict[str, float] | None, ours: dict[str, float]) -> str:
    left = f"{base['wall_s']:>9.1f}{base['cpu_s']:>9.1f}" if base else f"{'':>18}"
    return f"{name:44}{left}{ours['wall_s']:>11.1f}{ours['cpu_s']:>9.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(os.environ.get("AUTODL_CACHE_DIR", "cache"))
    )
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "doctor")
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--no-baseline", action="store_true", help="time only ours")
    parser.add_argument(
        "--signature-dir",
        type=Path,
        help="keep signatures here between runs (default: a fresh folder, so the first "
        "report computes them)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="ours and the baseline alternately, N times"
    )
    args = parser.parse_args()

    rows = build(args.work_dir, args.images)
    embedded = embed_images([(r[0], r[1]) for r in rows], args.backbone, cache_dir=args.cache_dir)
    print(
        f"{len(rows)} images, {len({r[3] for r in rows if r[3]})} labels, backbone "
        f"{args.backbone}: embeddings {embedded.n_cached} cached, {embedded.n_computed} computed"
    )
    pictures = [Picture(i, r[3], r[4], r[5], r[6]) for i, r in enumerate(rows)]
    thumbs = [(r[0], r[2]) for r in rows]
    size = embedded.preprocess.input_size
    loads = [os.getloadavg()[0]]

    rounds: list[tuple[float, dict[str, float], dict[str, float] | None]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sig_dir = args.signature_dir or tmp
        first: dict[str, dict[str, float]] = {}
        signatures, computed = _timed(
            first, "signatures", lambda: picture_signatures(thumbs, sig_dir)
        )
        _timed(
            first, "report", lambda: doctor.examine(pictures, embedded.embeddings, signatures, size)
        )
        loads.append(os.getloadavg()[0])

        baseline: dict[str, Any] | None = None
        for _ in range(args.rounds):
            warm: dict[str, dict[str, float]] = {}
            signatures, _ = _timed(warm, "signatures", lambda: picture_signatures(thumbs, sig_dir))
            clock = doctor.Clock()
            report = _timed(
                warm,
                "report",
                functools.partial(
                    doctor.examine, pictures, embedded.embeddings, signatures, size, clock=clock
                ),
            )
            loads.append(os.getloadavg()[0])
            if not args.no_baseline:
                data = tmp / "data.pkl"
                with data.open("wb") as file:
                    pickle.dump((pictures, embedded.embeddings, thumbs, sig_dir, size), file)
                baseline = run_baseline(args.baseline_rev, data, tmp)
                loads.append(os.getloadavg()[0])
            rounds.append(
                (loads[-1], warm["report"], baseline["parts"]["report"] if baseline else None)
            )

    ok = [s for s in signatures if s is not None]
    sample = np.random.default_rng(0).integers(0, len(ok), size=(300, 2))
    start = time.perf_counter()
    for i, j in sample:
        matching_points(ok[i], ok[j])
    all_pairs = (time.perf_counter() - start) / len(sample) * len(ok) * (len(ok) - 1) / 2

    base = baseline["parts"] if baseline else {}
    ours = clock.parts
    print(f"load average (1 min) during the runs: {', '.join(f'{v:.1f}' for v in loads)}")
    rev = f"baseline {args.baseline_rev}" if baseline else "baseline (not run)"
    print(f"{'seconds':44}{rev:>18}{'ours':>20}")
    print(f"{'':44}{'wall':>9}{'cpu':>9}{'wall':>11}{'cpu':>9}")
    for part in PARTS:
        if part in ours:
            print(_row(f"  {part}", base.get(part), ours[part]))
    if baseline:
        print(
            f"  (candidate pairs: baseline {baseline['pairs']}, ours "
            f"{clock.counts.get('candidate_pairs', 0)})"
        )
    print(_row("examine (the whole report)", base.get("report"), warm["report"]))
    cached = {m: warm["report"][m] + warm["signatures"][m] for m in ("wall_s", "cpu_s")}
    print(
        _row("report, signatures cached (every refresh)", None, cached)
        + f"  target < {TARGET_S:.0f} s"
    )
    print(_row("  of which reading signatures", None, warm["signatures"]))
    first_total = {m: first["report"][m] + first["signatures"][m] for m in ("wall_s", "cpu_s")}
    print(_row(f"first report (signatures computed: {computed})", None, first_total))
    print(_row("  of which computing signatures", None, first["signatures"]))
    print(f"{'geometric check of every pair (extrapolated)':44}{'':>18}{all_pairs:>11.0f}")
    for k, (load, ours_report, base_report) in enumerate(rounds, 1):
        print(_row(f"round {k} examine (load {load:.1f} after)", base_report, ours_report))
    kinds = {f.kind: f.count for f in report.findings}
    fit = report.domain_fit
    print(
        f"found: {len(report.duplicates)} duplicate groups, {len(report.label_issues)} likely "
        f"label errors, {len(report.suggestions)} suggestions; findings {kinds}; "
        f"domain fit {fit['verdict']} "
        f"({fit['cv_accuracy']:.1%} against {fit['chance_accuracy']:.1%})"
    )
    return 0 if cached["wall_s"] < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
