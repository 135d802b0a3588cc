"""The Train dialog's estimate before any run: a worker times the backbone on a few of the
project's pictures (run in-process here), and the estimate of a first quick run follows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ApiUser, reset_caches
from tests.runs.conftest import execute, start_run

pytestmark = pytest.mark.slow

LITE0 = "tf_efficientnet_lite0"


def test_a_first_run_is_estimated_from_a_short_measurement_here(
    client: TestClient,
    user: ApiUser,
    small_project: dict,
    queued_messages: Callable[[str], int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.pace import measure_backbone_pace

    # A cache of its own: nothing embedded yet, as on a new server (the measurement exports
    # the backbone's graph, as the first featurization here would).
    monkeypatch.setenv("AUTODL_CACHE_DIR", str(tmp_path / "fresh-cache"))
    reset_caches()
    pid = small_project["id"]
    url = f"/api/projects/{pid}/estimates"
    assert client.get(url, headers=user.headers).json()["backbones"] == {}
    unknown = client.post(f"{url}/measure", json={"backbone": "no_such_net"}, headers=user.headers)
    assert unknown.status_code == 404 and "is in the zoo" in unknown.json()["detail"]

    asked = client.post(f"{url}/measure", json={"backbone": LITE0}, headers=user.headers)
    assert asked.status_code == 202 and asked.json() == {"backbone": LITE0, "status": "measuring"}
    waiting = queued_messages("cpu")
    again = client.post(f"{url}/measure", json={"backbone": LITE0}, headers=user.headers)
    assert again.json()["status"] == "measuring" and queued_messages("cpu") == waiting
    shown = client.get(url, headers=user.headers).json()["backbones"][LITE0]
    assert shown == {
        "linear_s": None,
        "finetune_s": None,
        "runs_measured": 0,
        "source": None,
        "measuring": True,
    }

    # What the worker does with the message: time lite0 on 16 of the 40 pictures.
    assert measure_backbone_pace(pid, LITE0) == "measured"
    estimate = client.get(url, headers=user.headers).json()["backbones"][LITE0]
    assert estimate["source"] == "measured" and not estimate["measuring"]
    assert estimate["linear_s"] > 0 and estimate["finetune_s"] is None
    done = client.post(f"{url}/measure", json={"backbone": LITE0}, headers=user.headers)
    assert done.json()["status"] == "measured"

    run = start_run(client, user, small_project, backbone=LITE0)
    assert execute(run["id"]) == "succeeded"
    ran = client.get(f"/api/runs/{run['id']}", headers=user.headers).json()
    took = ran["duration_s"]
    print("\nrun timings", ran["metrics"]["timings"], ran["metrics"]["featurized"])
    print(f"\nlite0, 40 pictures: estimated {estimate['linear_s']} s, took {took:.1f} s")
    assert took / 2 <= estimate["linear_s"] <= took * 2, (estimate, took)
    after = client.get(url, headers=user.headers).json()["backbones"][LITE0]
    assert after["source"] == "runs" and after["runs_measured"] == 1


def test_too_few_labelled_pictures_are_not_measured(
    client: TestClient, user: ApiUser, project: dict, redis_url: str
) -> None:
    refused = client.post(
        f"/api/projects/{project['id']}/estimates/measure",
        json={"backbone": LITE0},
        headers=user.headers,
    )
    assert refused.status_code == 409
    assert "at least 8 labelled pictures" in refused.json()["detail"]
