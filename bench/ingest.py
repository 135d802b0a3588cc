"""Ingest throughput: the hymenoptera zip and a zip of 12-megapixel JPEGs through the ingest
service (what an upload and ``autodl import`` run: unzip with the archive walker's checks,
hash, deduplicate, verify by decoding, thumbnail, store, insert), on a fresh SQLite data dir.

Prints images/s, the process's CPU seconds and its peak RSS growth per set. With
``--baseline DIR`` (a checkout of an older commit, e.g. ``git worktree add /tmp/base
<commit>``) the same measurement runs with that code in a subprocess first, and both are
printed side by side with their ratio.

Run: ``PYTHONPATH=$PWD .venv/bin/python bench/ingest.py [--big 64] [--baseline DIR]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def zip_bytes(files: list[Path], root: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in files:
            archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


def measure(zips: dict[str, str]) -> dict[str, dict[str, float]]:
    """Ingest each zip file into a project of its own in a fresh data dir (this process)."""
    from backend.config import get_settings
    from backend.db import session_scope
    from backend.images.ingest import UploadSource, ingest_files
    from backend.migrations import prepare
    from backend.projects.models import Project
    from tests.factories import create_project, create_user

    prepare(get_settings())
    owner = create_user()
    results = {}
    for name, path in zips.items():
        project = create_project(owner, name)
        data = Path(path).read_bytes()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu, start = time.process_time(), time.perf_counter()
        with session_scope() as session:
            row = session.get_one(Project, project["id"])
            source = UploadSource(f"{name}.zip", io.BytesIO(data))
            report = ingest_files(session, get_settings(), row, [source], label=None, split=None)
        wall = time.perf_counter() - start
        n = len(report.accepted)
        results[name] = {
            "images": n,
            "rejected": len(report.rejected),
            "img_s": n / wall,
            "cpu_s": time.process_time() - cpu,
            "rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024,
            "load": os.getloadavg()[0],
        }
    return results


def in_subprocess(tree: Path, zips: dict[str, str], data_dir: Path) -> dict:
    """``measure`` with the code of ``tree`` (this file's copy of it), in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODL_")}
    env.update(PYTHONPATH=str(tree), AUTODL_DATA_DIR=str(data_dir), AUTODL_SECRET_KEY="bench")
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "from ingest_measure import measure; print(json.dumps(measure(json.loads(sys.argv[2]))))"
    )
    shim = data_dir.parent / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "ingest_measure.py").write_text(Path(__file__).read_text())
    out = subprocess.run(
        [sys.executable, "-c", code, str(shim), json.dumps(zips)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"measurement with {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from bench.photos import HYMENOPTERA, hymenoptera_files, phone_jpegs

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big", type=int, default=64, help="12-MP JPEGs in the second zip")
    parser.add_argument("--baseline", type=Path, help="a checkout of the code to compare with")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        zips = {"hymenoptera": root / "hymenoptera.zip"}
        zips["hymenoptera"].write_bytes(zip_bytes(hymenoptera_files(), HYMENOPTERA))
        if args.big:
            big = phone_jpegs(root / "big", args.big)
            zips["12-MP JPEG"] = root / "big.zip"
            zips["12-MP JPEG"].write_bytes(zip_bytes(big, root / "big"))
        paths = {name: str(path) for name, path in zips.items()}
        for name, path in zips.items():
            print(f"{name}: {path.stat().st_size / 1e6:.0f} MB zip")
        runs = {}
        if args.baseline:
            runs["baseline"] = in_subprocess(args.baseline.resolve(), paths, root / "base-data")
        runs["ours"] = in_subprocess(REPO, paths, root / "our-data")

    print(f"\n{'set':14}{'code':10}{'images':>7}{'img/s':>8}{'CPU s':>8}{'RSS +MB':>9}{'load':>7}")
    for name in paths:
        for code, results in runs.items():
            r = results[name]
            print(
                f"{name:14}{code:10}{r['images']:7d}{r['img_s']:8.1f}{r['cpu_s']:8.2f}"
                f"{r['rss_growth_mb']:9.0f}{r['load']:7.2f}"
            )
        if "baseline" in runs:
            base, ours = runs["baseline"][name], runs["ours"][name]
            print(
                f"{'':14}{'ours/base':10}{'':7}{ours['img_s'] / base['img_s']:7.2f}x"
                f"{base['cpu_s'] / ours['cpu_s']:7.2f}x less CPU"
            )


if __name__ == "__main__":
    main()
