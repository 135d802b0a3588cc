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
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image as PILImage

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def small_jpegs(n: int) -> list[bytes]:
    """``n`` distinct 64x48 JPEGs cropped from the shared datasets' photos."""
    sources = sorted(p for p in DATASETS.glob("*/*/*/*") if p.suffix.lower() in (".jpg", ".png"))
    rng = random.Random(0)
    out: list[bytes] = []
    seen: set[str] = set()
    while len(out) < n:
        with PILImage.open(sources[len(out) % len(sources)]) as img:
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
    return out


def p99_ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return 1000 * statistics.median(ordered), 1000 * ordered[int(0.99 * (len(ordered) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--stored", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
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
        pictures = small_jpegs(args.images)
        print(f"made {len(pictures)} distinct 64x48 JPEGs in {time.perf_counter() - start:.0f} s")
        owner = create_user()
        project = create_project(owner, "large")
        pid = project["id"]
        names = [f"class-{i:02d}" for i in range(20)]
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
                rows.append(
                    {
                        "project_id": pid,
                        "label_id": labels[i % 20].id if i % 10 else None,
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
            queries = {
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
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
