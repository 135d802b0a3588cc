"""Runs tests talk to the real Redis on 127.0.0.1:6379 (database 15, flushed around each test)
and execute the queued run in-process, so the whole pipeline runs without a worker process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from tests.conftest import ApiUser, hymenoptera_zip, redis_test_db, require_redis

RUNS_REDIS_URL = redis_test_db("runs", 15)
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here needs the real Redis (``redis_url`` below): ``-m "not redis"``."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.redis)


@pytest.fixture
def redis_url(shared_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    client = require_redis(RUNS_REDIS_URL)
    client.flushdb()
    monkeypatch.setenv("AUTODL_CACHE_DIR", str(shared_cache_dir))
    yield RUNS_REDIS_URL
    client.flushdb()


@pytest.fixture
def queued_messages(redis_url: str) -> Callable[[str], int]:
    client = redis.Redis.from_url(redis_url)
    return lambda queue: int(client.llen(queue))


@pytest.fixture
def hymenoptera_project(
    client: TestClient, user: ApiUser, project: dict, hymenoptera: Path
) -> dict:
    """The whole dataset (train/ and val/ folders) uploaded as one zip."""
    response = client.post(
        f"/api/projects/{project['id']}/images",
        files=[("files", ("hymenoptera.zip", hymenoptera_zip(hymenoptera), "application/zip"))],
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["accepted"]) >= 397
    return project


@pytest.fixture
def small_project(client: TestClient, user: ApiUser, project: dict, hymenoptera: Path) -> dict:
    """Ten images per label and split: quick to featurize."""
    response = client.post(
        f"/api/projects/{project['id']}/images",
        files=[
            ("files", ("few.zip", hymenoptera_zip(hymenoptera, per_class=10), "application/zip"))
        ],
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    return project


def start_run(client: TestClient, user: ApiUser, project: dict, **body: object) -> dict:
    response = client.post(f"/api/projects/{project['id']}/runs", json=body, headers=user.headers)
    assert response.status_code == 202, response.text
    return response.json()


def execute(run_id: int) -> str:
    from worker.pipeline import execute_run

    return execute_run(run_id)


def assert_predict_matches_stored(client: TestClient, user: ApiUser, run_id: int) -> None:
    """The exported model behind /predict says what the run stored for a validation image."""
    predictions = client.get(f"/api/runs/{run_id}/predictions", headers=user.headers).json()
    stored = predictions["items"][0]
    image = client.get(f"/api/images/{stored['image_id']}/file", headers=user.headers).content
    answer = client.post(
        f"/api/runs/{run_id}/predict",
        files=[("file", (stored["filename"], image, "image/jpeg"))],
        headers=user.headers,
    ).json()
    assert answer["label"] == stored["predicted_label"]
    for name, p in stored["probabilities"].items():
        assert abs(answer["probabilities"][name] - p) < 1e-4
