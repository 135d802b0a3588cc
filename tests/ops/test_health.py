"""Liveness and readiness from worker heartbeats; JSON 503s that name the failing part."""

from __future__ import annotations

import json
import time

import pytest
import redis
from fastapi.testclient import TestClient

from backend.ops import workers
from tests.conftest import reset_caches


def announce(url: str, name: str, *, interval_s: float = 10.0, age_s: float = 0.0) -> None:
    client = redis.Redis.from_url(url)
    workers.announce(client, name, queues=["cpu"], interval_s=interval_s, started_at=time.time())
    if age_s:  # as if the last heartbeat was sent age_s ago
        key = workers.KEY_PREFIX + name
        seen = json.loads(client.get(key) or b"{}")
        seen["seen_at"] -= age_s
        client.set(key, json.dumps(seen), ex=60)


def test_live_answers_without_checking_anything(client: TestClient) -> None:
    response = client.get("/api/health/live")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_ready_with_the_broker_down_is_a_503_naming_it(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTODL_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    reset_caches()
    started = time.perf_counter()
    response = client.get("/api/health/ready")
    assert time.perf_counter() - started < 10
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["broker", "workers"]
    assert body["checks"]["database"]["ok"] is True
    assert "broker: ConnectionError" in body["detail"]


def test_ready_needs_a_worker_heartbeat_within_its_interval(
    client: TestClient, redis_url: str
) -> None:
    response = client.get("/api/health/ready")
    assert response.status_code == 503
    assert response.json()["failing"] == ["workers"]
    assert "autodl worker" in response.json()["detail"]

    announce(redis_url, "late@host", interval_s=5, age_s=11)  # missed two intervals
    assert client.get("/api/health/ready").status_code == 503

    announce(redis_url, "busy@host", interval_s=5, age_s=4)  # within its interval: alive
    response = client.get("/api/health/ready")
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    assert checks["workers"]["count"] == 1
    assert {w["name"] for w in checks["workers"]["workers"]} == {"late@host", "busy@host"}

    legacy = client.get("/api/health").json()
    assert legacy["status"] == "ok" and legacy["worker"]["alive"] is True


def test_a_dead_database_is_a_json_503(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # The app started on its database; then the database goes away (nothing listens here).
    monkeypatch.setenv("AUTODL_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/gone")
    reset_caches()
    for path in ("/api/health", "/api/health/ready"):
        response = client.get(path, params={"worker": "false"})
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert "database" in body["failing"]
        assert "database" in body["detail"].lower()
