"""`autodl serve` as a user starts it: embedded Redis, SQLite, one worker, real training."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import hymenoptera_zip, redis_test_db, require_redis
from tests.e2e.server import follow_events, live_server, signup, spawn, stop, wait_healthy

pytestmark = pytest.mark.slow


def test_embedded_default_uploads_trains_and_predicts(tmp_path: Path, hymenoptera: Path) -> None:
    """A new server as a new user meets it, with its own empty embedding cache: every picture
    is featurized once, by the data doctor examining the upload or by the run."""
    archive = hymenoptera_zip(hymenoptera)
    with live_server(tmp_path / "data", AUTODL_CACHE_DIR=str(tmp_path / "cache")) as (server, _):
        health = server.client().get("/api/health").json()
        assert health["worker"]["alive"] and health["worker"]["count"] == 1

        with server.client() as anonymous:
            token = signup(anonymous)
        api = server.client(token)
        assert server.client().get("/api/projects").status_code == 401
        pid = api.post("/api/projects", json={"name": "Ants vs bees"}).json()["id"]

        report = api.post(
            f"/api/projects/{pid}/images",
            files=[("files", ("hymenoptera.zip", archive, "application/zip"))],
        ).json()
        assert len(report["accepted"]) == 398, report["rejected"]
        by_split = {(a["label"], a["split"]) for a in report["accepted"]}
        assert by_split == {("ants", "train"), ("bees", "train"), ("ants", "val"), ("bees", "val")}
        stored = sorted((server.data_dir / "images").rglob("*"))
        again = api.post(
            f"/api/projects/{pid}/images",
            files=[("files", ("hymenoptera.zip", archive, "application/zip"))],
        ).json()
        assert len(again["duplicates"]) == 398 and not again["accepted"]
        assert sorted((server.data_dir / "images").rglob("*")) == stored

        run = api.post(
            f"/api/projects/{pid}/runs",
            json={"mode": "linear", "backbone": "tf_efficientnet_lite0"},
        )
        assert run.status_code == 202
        events = follow_events(api, run.json()["id"])
        assert events[-1]["event"] == "end"
        final = events[-1]
        assert final["status"] == "succeeded", final["error"]
        assert final["metrics"]["accuracy"] >= 0.94  # lite0 measures 94.8 % (145/153) here
        stages = [e["stage"] for e in events]
        # The data doctor examines the upload first and caches lite0's embeddings of every
        # picture; a run that finds them all cached rightly has no featurizing stage.
        featurized = final["metrics"]["featurized"]
        assert "featurizing" in stages or featurized["computed"] == 0, (stages, featurized)
        assert featurized["computed"] + featurized["cached"] >= 397
        progress = [e["progress"] for e in events]
        assert progress == sorted(progress) and progress[-1] == 1.0

        onnx = api.get(f"/api/runs/{final['id']}/artifacts/onnx")
        assert onnx.status_code == 200 and len(onnx.content) > 1_000_000
        prediction = api.get(f"/api/runs/{final['id']}/predictions").json()["items"][5]
        image = api.get(f"/api/images/{prediction['image_id']}/file").content
        answer = api.post(
            f"/api/runs/{final['id']}/predict", files=[("file", ("x.jpg", image, "image/jpeg"))]
        ).json()
        assert answer["label"] == prediction["predicted_label"]

    # Stopping the server stops its worker and its embedded Redis too.
    socket_path = server.log.read_text().split("embedded Redis at redis+socket://")[1].split()[0]
    time.sleep(1)
    leftovers = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and any(socket_path in part for part in p.info["cmdline"])
    ]
    assert leftovers == []


@pytest.mark.redis
def test_killed_worker_never_leaves_a_run_running(tmp_path: Path, hymenoptera: Path) -> None:
    """Kill the worker mid-featurization; a new worker requeues the run and finishes it."""
    redis_url = redis_test_db("e2e", 14)
    require_redis(redis_url).flushdb()
    env = {"AUTODL_REDIS_URL": redis_url, "AUTODL_WORKER_HEARTBEAT_TIMEOUT_S": "6"}
    with live_server(tmp_path / "data", worker=False, **env) as (server, _):
        log = tmp_path / "worker.log"
        worker = spawn(["worker"], server.env, log)
        try:
            wait_healthy(server.url, log)
            with server.client() as anonymous:
                token = signup(anonymous)
            api = server.client(token)
            pid = api.post("/api/projects", json={"name": "kill test"}).json()["id"]
            api.post(
                f"/api/projects/{pid}/images",
                files=[("files", ("h.zip", hymenoptera_zip(hymenoptera), "application/zip"))],
            )
            run_id = api.post(
                f"/api/projects/{pid}/runs", json={"backbone": "tf_efficientnet_lite1"}
            ).json()["id"]
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                state = api.get(f"/api/runs/{run_id}").json()
                if state["stage"] == "featurizing" and state["images_done"] > 0:
                    break
                time.sleep(0.2)
            assert state["status"] == "running"
            stop(worker, signal.SIGKILL)
        finally:
            stop(worker)

        time.sleep(7)  # let the heartbeat go stale
        worker = spawn(["worker"], server.env, log)
        try:
            final = follow_events(api, run_id, timeout=300)[-1]
        finally:
            stop(worker)
        assert final["status"] in ("succeeded", "failed")
        if final["status"] == "failed":
            assert final["error"]
        else:
            assert final["metrics"]["accuracy"] >= 0.96  # lite1: 97-98 %
