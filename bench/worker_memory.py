"""A worker's resident memory after a run, with and without Celery's max-memory-per-child.

For each setting of ``AUTODL_WORKER_MAX_MEMORY_MB`` (0 = off, then the default) starts
``autodl serve`` in a fresh data dir, uploads hymenoptera (398 images), trains one linear
run (cold: every embedding computed), waits for its extra exports, lets the worker idle
for a few seconds and prints the resident size of the worker's main and pool processes.

Run: ``.venv/bin/python bench/worker_memory.py [--backbone NAME] [--limits 0,1024]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_linear import DATASET, serving, signed_in, timed_run, wait_for_exports, zip_of

MB = 1024 * 1024


def worker_processes(server: psutil.Process) -> tuple[psutil.Process, list[psutil.Process]]:
    main = next(
        p for p in server.children(recursive=True) if "worker" in " ".join(p.cmdline()[-6:])
    )
    return main, main.children()


def measure(limit_mb: int, backbone: str, idle_s: float) -> dict[str, float]:
    files = sorted(p for p in DATASET.rglob("*") if p.is_file())
    extra = {"AUTODL_WORKER_MAX_MEMORY_MB": str(limit_mb)}
    with (
        tempfile.TemporaryDirectory() as tmp,
        serving(Path(tmp) / "data", 120, **extra) as (url, server),
    ):
        main, pool = worker_processes(psutil.Process(server.pid))
        before = sum(p.memory_info().rss for p in pool) / MB
        api = signed_in(url)
        pid = api.post("/api/projects", json={"name": "memory"}).json()["id"]
        api.post(
            f"/api/projects/{pid}/images",
            files=[("files", ("h.zip", zip_of(files), "application/zip"))],
        )
        seconds, final = timed_run(api, pid, backbone, "logreg")
        wait_for_exports(api, final["id"])
        time.sleep(idle_s)
        main, pool = worker_processes(psutil.Process(server.pid))
        return {
            "pool_before_mb": before,
            "pool_after_mb": sum(p.memory_info().rss for p in pool) / MB,
            "main_mb": main.memory_info().rss / MB,
            "run_s": seconds,
            "status": final.get("status") == "succeeded",
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--limits", default="0,1024", help="AUTODL_WORKER_MAX_MEMORY_MB values")
    parser.add_argument("--idle-s", type=float, default=8.0)
    args = parser.parse_args()
    rows = [(int(v), measure(int(v), args.backbone, args.idle_s)) for v in args.limits.split(",")]
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.backbone}"
    )
    print(
        f"{'max MB':>7} {'pool idle MB':>13} {'pool after run MB':>18} {'main MB':>8} {'run s':>6}"
    )
    for limit, r in rows:
        print(
            f"{limit or 'off':>7} {r['pool_before_mb']:>13.0f} {r['pool_after_mb']:>18.0f} "
            f"{r['main_mb']:>8.0f} {r['run_s']:>6.1f}{'' if r['status'] else '  (run failed)'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
