"""Time of the data doctor's report over 5,000 images once their embeddings are cached.

The images: every picture of ``../shared/datasets`` (hymenoptera, rsscn7, pbc_blood_cells,
dtd_textures; labelled ``<set>/<class>``, their own splits), topped up to ``--images`` with
half-area crops of them (which the doctor should find as near duplicates); every fifth
image is left unlabelled. Signatures are computed from 256 px thumbnails made by the
upload path's own ``read_picture``, as in production.

Printed side by side: the report with signatures cached (what every refresh after the
first costs), the first report (signatures computed), and the baseline of checking every
pair geometrically (extrapolated from timed pairs) instead of only embedding neighbours.

Run: ``.venv/bin/python bench/doctor.py [--images 5000] [--cache-dir DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from backend.images.decode import read_picture
from worker.ml.doctor import Picture, examine
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
    rows = []
    for k, (path, label, split) in enumerate(pictures[:n]):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        thumb = work / "thumbnails" / f"{sha}.jpg"
        picture = read_picture(path, 64_000_000)
        if not thumb.exists():
            thumb.parent.mkdir(parents=True, exist_ok=True)
            thumb.write_bytes(picture.thumbnail_jpeg)
        rows.append(
            (sha, path, thumb, None if k % 5 == 4 else label, split, picture.width, picture.height)
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(os.environ.get("AUTODL_CACHE_DIR", "cache"))
    )
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "doctor")
    args = parser.parse_args()

    rows = build(args.work_dir, args.images)
    embedded = embed_images([(r[0], r[1]) for r in rows], args.backbone, cache_dir=args.cache_dir)
    print(
        f"{len(rows)} images, {len({r[3] for r in rows if r[3]})} labels, backbone "
        f"{args.backbone}: embeddings {embedded.n_cached} cached, {embedded.n_computed} computed"
    )
    pictures = [Picture(i, r[3], r[4], r[5], r[6]) for i, r in enumerate(rows)]
    thumbs = [(r[0], r[2]) for r in rows]
    print(f"load average before: {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        signatures, computed = picture_signatures(thumbs, Path(tmp))
        first_signatures = time.perf_counter() - start
        start = time.perf_counter()
        report = examine(pictures, embedded.embeddings, signatures, embedded.preprocess.input_size)
        first_examine = time.perf_counter() - start
        print(f"first report: signatures {first_signatures:.1f} s, examine {first_examine:.1f} s")

        start = time.perf_counter()
        signatures, _ = picture_signatures(thumbs, Path(tmp))
        warm_signatures = time.perf_counter() - start
        start = time.perf_counter()
        examine(pictures, embedded.embeddings, signatures, embedded.preprocess.input_size)
        warm_examine = time.perf_counter() - start

    ok = [s for s in signatures if s is not None]
    rng = np.random.default_rng(0)
    sample = rng.integers(0, len(ok), size=(300, 2))
    start = time.perf_counter()
    for i, j in sample:
        matching_points(ok[i], ok[j])
    per_pair = (time.perf_counter() - start) / len(sample)
    all_pairs = per_pair * len(ok) * (len(ok) - 1) / 2

    warm = warm_signatures + warm_examine
    first = first_signatures + first_examine
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"{'':44}{'seconds':>10}")
    print(f"{'report, signatures cached (every refresh)':44}{warm:>10.1f}  target < {TARGET_S:.0f}")
    print(f"{'  of which reading signatures':44}{warm_signatures:>10.1f}")
    print(f"{'first report (signatures computed: ' + str(computed) + ')':44}{first:>10.1f}")
    print(f"{'  of which computing signatures':44}{first_signatures:>10.1f}")
    print(f"{'baseline: geometric check of every pair':44}{all_pairs:>10.0f}  (extrapolated)")
    kinds = {f.kind: f.count for f in report.findings}
    fit = report.domain_fit
    print(
        f"found: {len(report.duplicates)} duplicate groups, {len(report.label_issues)} likely "
        f"label errors, {len(report.suggestions)} suggestions; findings {kinds}; "
        f"domain fit {fit['verdict']} "
        f"({fit['cv_accuracy']:.1%} against {fit['chance_accuracy']:.1%})"
    )
    return 0 if warm < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
