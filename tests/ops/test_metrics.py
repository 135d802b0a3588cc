"""/metrics: Prometheus text with the fleet's figures and the API's latency by route."""

from __future__ import annotations

import time

import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from backend.db import session_scope
from backend.ops import workers
from backend.runs.models import Run, RunMode, RunStatus
from tests.conftest import ApiUser


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_runs_queue_workers_and_latency(
    client: TestClient, user: ApiUser, project: dict, redis_url: str
) -> None:
    response = client.post(
        f"/api/projects/{project['id']}/runs", json={"mode": "linear"}, headers=user.headers
    )
    assert response.status_code == 202, response.text
    with session_scope() as session:  # one finished run with its timings, as a worker leaves it
        run = session.get_one(Run, response.json()["id"])
        finished = Run(
            project_id=run.project_id,
            mode=RunMode.LINEAR,
            backbone="tf_efficientnet_lite0",
            options={},
            status=RunStatus.SUCCEEDED,
            stage="succeeded",
            started_at=run.created_at,
            finished_at=run.created_at.replace(microsecond=0) + (run.created_at - run.created_at),
            metrics={"timings": {"featurize_s": 2.0}, "featurized": {"computed": 40}},
        )
        session.add(finished)
    workers.announce(
        redis.Redis.from_url(redis_url),
        "w1@host",
        queues=["cpu"],
        interval_s=10,
        started_at=time.time(),
    )
    client.get(f"/api/projects/{project['id']}", headers=user.headers)

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found[("autodl_runs", (("mode", "linear"), ("status", "queued")))] == 1
    assert found[("autodl_runs", (("mode", "linear"), ("status", "succeeded")))] == 1
    assert found[("autodl_runs", (("mode", "finetune"), ("status", "running")))] == 0
    assert found[("autodl_queue_depth", (("queue", "cpu"),))] == 1
    assert found[("autodl_workers", ())] == 1
    assert (
        found[("autodl_featurize_images_per_second", (("backbone", "tf_efficientnet_lite0"),))]
        == 20
    )
    assert (
        found[("autodl_stage_duration_seconds_count", (("mode", "linear"), ("stage", "featurize")))]
        == 1
    )
    assert (
        found[("autodl_run_duration_seconds_count", (("mode", "linear"), ("status", "succeeded")))]
        == 1
    )
    route = (
        "autodl_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "/api/projects/{pid}"), ("status", "200")),
    )
    assert found[route] >= 1  # by template: one series for every project id
    assert not any(
        "/api/projects/" + str(project["id"]) in dict(k[1]).get("route", "") for k in found
    )
