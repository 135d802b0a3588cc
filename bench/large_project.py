"""A 100,000-image project through the API: listing and filtering pages, bulk relabel of
10,000 images, the project's JSON and page, and the health report's endpoint.

The images are small real-looking JPEGs (64x48 crops of the shared datasets' photos, every
one distinct), made in memory; rows are inserted in bulk (what 100k uploads would leave),
and the first ``--stored`` of them also get their blob and thumbnail through ``ImageStore``
(listing reads only rows). Fresh SQLite data dir, the app in-process (``TestClient``).

Run: ``PYTHONPATH=$PWD .venv/bin/python bench/large_project.py [--images 100000]``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image as PILImage

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def source_photos() -> list[Path]:
    return sorted(p for p in DATASETS.glob("*/*/*/*") if p.suffix.lower() in (".jpg", ".png"))


def small_jpegs(n: int) -> tuple[list[bytes], list[int]]:
    """``n`` distinct 64x48 JPEGs cropped from the shared datasets' photos (64 crops of each
    photo in turn), and the index into :func:`source_photos` of each one's photo."""
    sources = source_photos()
    rng = random.Random(0)
    out: list[bytes] = []
    source_of: list[int] = []
    seen: set[str] = set()
    photo_number = 0
    while len(out) < n:
        k = photo_number % len(sources)
        photo_number += 1
        with PILImage.open(sources[k]) as img:
            photo = img.convert("RGB")
        photo.thumbnail((256, 256))
        for _ in range(min(64, n - len(out))):
            x, y = rng.randrange(photo.width - 64), rng.randrange(photo.height - 48)
            buffer = io.BytesIO()
            photo.crop((x, y, x + 64, y + 48)).save(buffer, "JPEG", quality=rng.randrange(70, 95))
            data = buffer.getvalue()
            digest = hashlib.sha256(data).hexdigest()
            if digest not in seen:
                seen.add(digest)
                out.append(data)
                source_of.append(k)
    return out, source_of


def p99_ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return 1000 * statistics.median(ordered), 1000 * ordered[int(0.99 * (len(ordered) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--stored", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument(
        "--worker",
        action="store_true",
        help="also a Quick run and the health report in child processes (every image "
        "stored; see bench/large_worker.py for which embeddings are seeded)",
    )
    parser.add_argument(
        "--real", type=int, default=5_000, help="images the Quick run featurizes for real"
    )
    parser.add_argument(
        "--parts", default="quick,health", help="with --worker: which of quick,health to run"
    )
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument(
        "--seed-cache",
        type=Path,
        default=Path("/work/cache-bench"),
        help="a cache dir to start from (exported graphs, the source photos' embeddings)",
    )
    args = parser.parse_args()
    if args.worker:
        args.stored = args.images
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(AUTODL_DATA_DIR=tmp, AUTODL_SECRET_KEY="bench")
        from fastapi.testclient import TestClient
        from sqlalchemy import insert

        from backend.app import create_app
        from backend.config import get_settings
        from backend.db import session_scope
        from backend.images.models import Image
        from backend.migrations import prepare
        from backend.projects.models import Label, label_key
        from backend.storage import ImageStore
        from tests.factories import create_project, create_user

        settings = prepare(get_settings())
        start = time.perf_counter()
        pictures, source_of = small_jpegs(args.images)
        print(f"made {len(pictures)} distinct 64x48 JPEGs in {time.perf_counter() - start:.0f} s")
        owner = create_user()
        project = create_project(owner, "large")
        pid = project["id"]
        names = [f"class-{i:02d}" for i in range(20)]
        # A picture's label: its source photo's class (dataset/folder), folded onto 20.
        sources = source_photos()
        classes = sorted({(p.parts[-4], p.parent.name) for p in sources})
        label_of = [classes.index((p.parts[-4], p.parent.name)) % 20 for p in sources]
        start = time.perf_counter()
        store = ImageStore(settings)
        with session_scope() as session:
            labels = []
            for i, name in enumerate(names):
                label = Label(
                    project_id=pid, name=name, name_key=label_key(name), color=f"#{i:06x}"
                )
                session.add(label)
                labels.append(label)
            session.flush()
            rows = []
            for i, data in enumerate(pictures):
                sha = hashlib.sha256(data).hexdigest()
                if i < args.stored:
                    with store.stage(io.BytesIO(data), len(data)) as staged:
                        store.put(staged, data)
                    if args.worker and i >= args.real:  # seeded: see bench/large_worker.py
                        shutil.copyfile(sources[source_of[i]], store.blob_path(sha))
                rows.append(
                    {
                        "project_id": pid,
                        "label_id": labels[label_of[source_of[i]]].id if i % 10 else None,
                        "split": ("train", "val", "test", None)[i % 4],
                        "split_source": "user" if i % 4 != 3 else None,
                        "sha256": sha,
                        "filename": f"img-{i:06d}.jpg",
                        "format": "JPEG",
                        "width": 64,
                        "height": 48,
                        "size_bytes": len(data),
                    }
                )
            for i in range(0, len(rows), 5000):
                session.execute(insert(Image), rows[i : i + 5000])
        print(f"inserted {len(rows)} rows in {time.perf_counter() - start:.0f} s")

        with TestClient(create_app()) as client:
            client.headers.update(owner.headers)
            base = f"/api/projects/{pid}/images"
            queries: dict[str, dict[str, str | int]] = {
                "first page": {"limit": 50},
                "deep page (offset 90k)": {"limit": 50, "offset": 90_000},
                "label filter": {"label": "class-07", "limit": 50, "offset": 2_000},
                "split filter": {"split": "val", "limit": 50, "offset": 10_000},
                "unlabeled": {"unlabeled": "true", "limit": 50, "offset": 5_000},
            }
            print(
                f"\n{'listing (50 per page)':26}{'median ms':>10}{'p99 ms':>9}  target p99 < 100 ms"
            )
            for name, params in queries.items():
                times = []
                for _ in range(args.requests):
                    t = time.perf_counter()
                    response = client.get(base, params=params)
                    times.append(time.perf_counter() - t)
                    assert response.status_code == 200, response.text
                median, p99 = p99_ms(times)
                print(f"{name:26}{median:10.1f}{p99:9.1f}  {'met' if p99 < 100 else 'NOT met'}")

            ids = [
                item["id"]
                for offset in range(0, 10_000, 500)
                for item in client.get(base, params={"limit": 500, "offset": offset}).json()[
                    "items"
                ]
            ]
            t = time.perf_counter()
            response = client.patch(base, json={"ids": ids[:10_000], "label": "class-03"})
            relabel = time.perf_counter() - t
            print(
                f"\nbulk relabel of {len(ids[:10_000])}: {1000 * relabel:.0f} ms "
                f"({response.status_code})"
            )
            for name, path in (
                ("project JSON (counts)", f"/api/projects/{pid}"),
                ("project page (HTML)", f"/projects/{pid}"),
                ("health report", f"/api/projects/{pid}/health"),
            ):
                times = []
                for _ in range(10):
                    t = time.perf_counter()
                    response = client.get(path)
                    times.append(time.perf_counter() - t)
                median, _ = p99_ms(times)
                print(
                    f"{name:26}{median:10.1f} ms median, max {1000 * max(times):.1f} ms "
                    f"({response.status_code})"
                )
            if args.worker:
                worker_phase(args, client, pid, pictures, source_of, settings.cache_dir)
    print(f"load average after: {os.getloadavg()}")


def worker_phase(
    args: argparse.Namespace,
    client: TestClient,
    pid: int,
    pictures: list[bytes],
    source_of: list[int],
    cache_dir: Path,
) -> None:
    """A Quick run and the health report of the project, each in a child process."""
    import large_worker as lw

    if args.seed_cache.is_dir():
        shutil.copytree(args.seed_cache, cache_dir, dirs_exist_ok=True)
    shas = [hashlib.sha256(data).hexdigest() for data in pictures]
    seeded, seconds = lw.seed_embeddings(shas, source_photos(), source_of, args.backbone, args.real)
    print(
        f"\nseeded {seeded} cache entries with their source photo's real embedding in "
        f"{seconds:.0f} s; the first {args.real} images are featurized for real by the run "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    if "quick" in args.parts:
        quick_part(client, pid, args)
    if "health" in args.parts:
        health_part(client, pid)


def quick_part(client: TestClient, pid: int, args: argparse.Namespace) -> None:
    import large_worker as lw

    run_id, quick = lw.quick_run(pid, args.backbone)
    run = client.get(f"/api/runs/{run_id}").json()
    metrics = run.get("metrics") or {}
    print(
        "\n".join(lw.describe(f"Quick run {run_id} ({run.get('status')})", quick))
        + f"\n  featurized {metrics.get('featurized')}, timings {metrics.get('timings')}, "
        f"n_train {metrics.get('n_train')}, n_val {metrics.get('n_val')}, "
        f"accuracy {metrics.get('accuracy')}  (target: flat, peak < 2048 MB; load average "
        f"{os.getloadavg()[0]:.1f})"
    )
    if run.get("status") != "succeeded":
        print(run.get("error"), quick.output[-3000:])


def health_part(client: TestClient, pid: int) -> None:
    import large_worker as lw

    health = lw.health_report(pid)
    print("\n".join(lw.describe("health report", health)))
    if health.returncode:
        print(health.output[-3000:])
    times, response = [], None
    for _ in range(5):
        t = time.perf_counter()
        response = client.get(f"/api/projects/{pid}/health")
        times.append(time.perf_counter() - t)
    assert response is not None
    print(
        f"  GET health: median {1000 * statistics.median(times):.0f} ms, "
        f"{len(response.content) / 1024:.0f} KiB ({response.status_code}); "
        f"stored report {lw.stored_report_kib(pid):.0f} KiB, timings {lw.report_timings(pid)} "
        f"(load average {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
