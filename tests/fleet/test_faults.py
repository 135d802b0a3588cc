"""Faults injected into real processes; each test fails if its protection is removed.

- the owning worker killed with -9 while an SSE client watches: the run is requeued by the
  recovery sweep (not failed by the reader) and finishes on the other worker;
- Redis restarted without persistence under a backlog: the sweep re-sends every queued
  run that has no message any more, and every run finishes on the same, unrestarted worker;
- ``autodl serve`` killed with -9: its worker and Redis die with it, and a new ``serve``
  on the same data dir starts clean and finishes what was running and queued;
- the API killed with -9 mid-ingest: the next start removes the orphan files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

from backend.client import run_events
from tests.conftest import hymenoptera_zip
from tests.e2e.server import follow_events, live_server, signup, spawn, stop, wait_healthy
from tests.fleet.cluster import (
    descendants,
    gone,
    redis_server,
    run_row,
    upload_unexamined,
    wait_for,
)

pytestmark = [pytest.mark.slow]

FAST_RECOVERY = {
    "AUTODL_WORKER_HEARTBEAT_TIMEOUT_S": "15",  # a run heartbeats every 5 s
    "AUTODL_WORKER_HEARTBEAT_INTERVAL_S": "1",
    "AUTODL_RECOVERY_SWEEP_S": "2",
}


def wait_ready(url: str, log: Path, workers: int, timeout: float = 180) -> None:
    def ready() -> bool:
        try:
            body = httpx.get(f"{url}/api/health/ready", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        return body["checks"]["workers"].get("count", 0) >= workers

    try:
        wait_for(ready, timeout, f"{workers} live workers")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None


def test_killed_worker_with_a_watcher_finishes_on_the_other_worker(
    tmp_path: Path, hymenoptera: Path
) -> None:
    with redis_server(tmp_path / "redis") as broker:
        env = {"AUTODL_REDIS_URL": broker.url, "AUTODL_CACHE_DIR": str(tmp_path / "cache")}
        with live_server(tmp_path / "data", worker=False, **env, **FAST_RECOVERY) as (server, _):
            logs = {name: tmp_path / f"{name}.log" for name in ("one", "two")}
            workers = {
                name: spawn(["worker", "--name", f"{name}@test"], server.env, log)
                for name, log in logs.items()
            }
            try:
                wait_ready(server.url, server.log, workers=2)
                with server.client() as anonymous:
                    token = signup(anonymous)
                api = server.client(token)
                pid = api.post("/api/projects", json={"name": "kill -9"}).json()["id"]
                upload_unexamined(api, pid, hymenoptera, per_class=20)
                run_id = api.post(f"/api/projects/{pid}/runs", json={}).json()["id"]

                events: list[dict] = []

                def watch() -> None:  # an SSE client, watching from start to end
                    with server.client(token) as sse:
                        for event in run_events(sse, run_id, timeout=600):
                            events.append(event)

                watcher = threading.Thread(target=watch)
                watcher.start()
                wait_for(
                    lambda: any(e.get("images_done", 0) > 0 for e in events),
                    300,
                    "featurization to start",
                )
                owner = run_row(server.data_dir, run_id)["worker"]
                victim = owner.split("@")[0]
                assert victim in workers, owner
                stop(workers[victim], signal.SIGKILL)
                watcher.join(timeout=600)
                survivor = next(name for name in workers if name != victim)

                final = events[-1]
                assert final["event"] == "end"
                assert final["status"] == "succeeded", final["error"]
                row = run_row(server.data_dir, run_id)
                assert row["worker"] == f"{survivor}@test" and row["attempts"] == 2
                # Requeued, never failed (the queued moment itself may fall between two polls
                # of the stream: the idle worker claims the run within milliseconds).
                assert "failed" not in [e["status"] for e in events]
            finally:
                for process in workers.values():
                    stop(process)


def test_redis_restart_without_persistence_loses_no_queued_run(
    tmp_path: Path, hymenoptera: Path, shared_cache_dir: Path
) -> None:
    with redis_server(tmp_path / "redis") as broker:
        env = {"AUTODL_REDIS_URL": broker.url, "AUTODL_CACHE_DIR": str(shared_cache_dir)}
        with live_server(tmp_path / "data", worker=False, **env, **FAST_RECOVERY) as (server, _):
            log = tmp_path / "worker.log"
            worker = spawn(["worker"], server.env, log)
            try:
                wait_ready(server.url, log, workers=1)
                with server.client() as anonymous:
                    api = server.client(signup(anonymous))
                pid = api.post("/api/projects", json={"name": "backlog"}).json()["id"]
                upload_unexamined(api, pid, hymenoptera, per_class=8)
                runs = [
                    api.post(f"/api/projects/{pid}/runs", json={"options": {"seed": s}}).json()
                    for s in range(3)
                ]
                broker.restart()  # every message (queued or reserved) is gone
                for run in runs:
                    final = follow_events(api, run["id"], timeout=400)[-1]
                    assert final["status"] == "succeeded", final["error"]
                assert worker.poll() is None  # recovered without restarting the worker
            finally:
                stop(worker)


def test_serve_killed_with_9_leaves_no_orphans_and_the_next_serve_finishes_its_runs(
    tmp_path: Path, hymenoptera: Path
) -> None:
    data_dir = tmp_path / "data"
    env = {"AUTODL_CACHE_DIR": str(tmp_path / "cache"), **FAST_RECOVERY}
    with live_server(data_dir, **env) as (server, process):
        wait_ready(server.url, server.log, workers=1)
        with server.client() as anonymous:
            token = signup(anonymous)
        api = server.client(token)
        pid = api.post("/api/projects", json={"name": "serve -9"}).json()["id"]
        upload_unexamined(api, pid, hymenoptera, per_class=20)
        running = api.post(f"/api/projects/{pid}/runs", json={}).json()["id"]
        queued = api.post(f"/api/projects/{pid}/runs", json={"options": {"seed": 1}}).json()["id"]
        wait_for(
            lambda: api.get(f"/api/runs/{running}").json()["images_done"] > 0,
            300,
            "featurization to start",
        )
        children = descendants(process.pid)
        assert len(children) >= 3  # the embedded Redis, the worker and its pool process
        os.kill(process.pid, signal.SIGKILL)  # the server alone, not its process group
        wait_for(lambda: all(gone(child) for child in children), 30, "serve's children to die")

    with live_server(data_dir, **env) as (server, process):
        api = server.client(token)
        for run_id in (running, queued):
            final = follow_events(api, run_id, timeout=400)[-1]
            assert final["status"] == "succeeded", final["error"]
        children = descendants(process.pid)
    wait_for(lambda: all(gone(child) for child in children), 30, "a clean stop")


def test_api_killed_mid_ingest_leaves_nothing_after_the_next_start(
    tmp_path: Path, hymenoptera: Path
) -> None:
    data_dir = tmp_path / "data"
    archive = hymenoptera_zip(hymenoptera)
    env = {"AUTODL_ORPHAN_GRACE_S": "0"}
    with live_server(data_dir, worker=False, **env) as (server, process):
        with server.client() as anonymous:
            token = signup(anonymous)
        api = server.client(token)
        pid = api.post("/api/projects", json={"name": "ingest -9"}).json()["id"]

        def upload() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server dies under it
                api.post(
                    f"/api/projects/{pid}/images",
                    files=[("files", ("h.zip", archive, "application/zip"))],
                )

        uploader = threading.Thread(target=upload)
        uploader.start()
        images = data_dir / "images"
        wait_for(lambda: len(list(images.rglob("*"))) > 40, 120, "ingest to be under way")
        os.kill(process.pid, signal.SIGKILL)
        uploader.join(timeout=60)
    leftovers = [p for p in (images, data_dir / "thumbnails") for p in p.rglob("*") if p.is_file()]
    assert leftovers  # blobs and thumbnails whose rows never committed

    with live_server(data_dir, worker=False, **env) as (server, _):
        api = server.client(token)
        assert api.get(f"/api/projects/{pid}/images").json()["total"] == 0

        def clean() -> bool:
            kept = [
                p
                for folder in ("images", "thumbnails", "tmp")
                for p in (data_dir / folder).rglob("*")
                if p.is_file()
            ]
            return not kept

        wait_for(clean, 60, "the startup sweep to remove the orphans")
        wait_healthy(server.url, server.log, worker=False)
