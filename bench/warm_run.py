"""A Quick run whose embeddings are all cached, timed as the API sees it.

Starts a real ``autodl serve`` (API + worker + embedded Redis, fresh data dir), uploads the
hymenoptera zip, then posts Quick (linear) runs one after another and polls each from POST
to ``succeeded``. The first run featurizes (the cold figure, the baseline a user sees the
first time); the following ones find every embedding cached and should do no network build
and no graph export. Prints, per run, the wall time, the run's own stage timings, the
worker's CPU seconds and the load average.

Run: ``PYTHONPATH=$PWD .venv/bin/python bench/warm_run.py [--runs 3] [--cache DIR]``.
``--cache`` (e.g. /work/cache-bench) reuses a shared embedding cache, so the first run is
already warm on disk but in a fresh worker process.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import hymenoptera_zip, require_hymenoptera
from tests.e2e.server import live_server, signup


def worker_cpu_s(server_pid: int) -> float:
    """User + system CPU seconds of every process under the server (worker pool included)."""
    total = 0.0
    for proc in psutil.Process(server_pid).children(recursive=True):
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def timed_run(client: httpx.Client, project_id: int, server_pid: int) -> dict[str, object]:
    cpu_before = worker_cpu_s(server_pid)
    start = time.perf_counter()
    response = client.post(
        f"/api/projects/{project_id}/runs",
        json={"mode": "linear", "backbone": "tf_efficientnet_lite0"},
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    while True:
        run = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.05)
    wall = time.perf_counter() - start
    assert run["status"] == "succeeded", run
    metrics = run["metrics"]
    return {
        "wall_s": wall,
        "cpu_s": worker_cpu_s(server_pid) - cpu_before,
        "featurized": metrics.get("featurized"),
        "timings": metrics.get("timings"),
        "accuracy": metrics.get("accuracy"),
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cache", type=Path, help="embedding cache to share (default: fresh)")
    args = parser.parse_args()
    dataset = require_hymenoptera()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        extra = {"AUTODL_CACHE_DIR": str(args.cache)} if args.cache else {}
        with live_server(data_dir, AUTODL_OFFLINE="1", **extra) as (server, process):
            with server.client() as anonymous:
                token = signup(anonymous)
            with server.client(token) as client:
                project = client.post("/api/projects", json={"name": "warm"}).json()
                upload = client.post(
                    f"/api/projects/{project['id']}/images",
                    files=[("files", ("h.zip", hymenoptera_zip(dataset), "application/zip"))],
                )
                assert upload.status_code == 200, upload.text
                print(f"uploaded {len(upload.json()['accepted'])} images")
                print(
                    f"\n{'run':>4}{'POST→succeeded s':>18}{'worker CPU s':>14}{'load':>6}"
                    "  featurized (computed/cached)  timings"
                )
                for index in range(args.runs):
                    r = timed_run(client, project["id"], process.pid)
                    f = r["featurized"] or {}
                    assert isinstance(f, dict)
                    print(
                        f"{index + 1:>4}{r['wall_s']:>18.2f}{r['cpu_s']:>14.2f}{r['load']:>6.2f}"
                        f"  {f.get('computed')}/{f.get('cached')}"
                        f"{'':>20}{r['timings']}"
                    )
    print("(run 1: cold unless --cache held this dataset's embeddings; runs 2+: all cached)")


if __name__ == "__main__":
    main()
