"""Grad-CAM heatmaps of a real linear run's model, asked for over the API, cached."""

from __future__ import annotations

import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import ApiUser
from tests.factories import tiny_run
from tests.runs.conftest import start_run


def test_a_heatmap_is_computed_on_request_cached_and_served(
    client: TestClient, user: ApiUser, small_project: dict
) -> None:
    from worker.explain import explain_image
    from worker.tasks import train_run

    run = start_run(client, user, small_project, mode="linear", **tiny_run())
    assert train_run(run["id"]) == "succeeded"
    predictions = client.get(f"/api/runs/{run['id']}/predictions", headers=user.headers).json()
    item = predictions["items"][0]
    url = f"/api/runs/{run['id']}/explanations/{item['image_id']}"

    asked = client.post(url, headers=user.headers)
    assert asked.status_code == 202 and asked.json()["status"] == "computing"
    assert explain_image(run["id"], item["image_id"]) == "ready"
    done = client.get(url, headers=user.headers).json()
    # The rebuilt eager model gives the run's own answer.
    assert done["status"] == "ready" and done["label"] == item["predicted_label"]

    png = client.get(done["url"], headers=user.headers)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    heat = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB"), dtype=np.float32)
    assert heat.shape == (160, 160, 3)  # the tiny backbone's input size
    # A heatmap, not a flat tint: the colour map varies across the picture.
    red_minus_blue = heat[..., 0] - heat[..., 2]
    assert red_minus_blue.std() > 10

    again = client.post(url, headers=user.headers)
    assert again.status_code == 200 and again.json()["url"] == done["url"]
    assert explain_image(run["id"], item["image_id"]) == "skipped"


def test_heatmaps_only_for_images_of_the_runs_project(
    client: TestClient, user: ApiUser, small_project: dict, make_user
) -> None:  # type: ignore[no-untyped-def]
    run = start_run(client, user, small_project, mode="linear", **tiny_run())
    missing = client.post(f"/api/runs/{run['id']}/explanations/999999", headers=user.headers)
    assert missing.status_code == 404
    image_id = client.get(
        f"/api/projects/{small_project['id']}/images", headers=user.headers
    ).json()["items"][0]["id"]
    queued = client.post(f"/api/runs/{run['id']}/explanations/{image_id}", headers=user.headers)
    assert queued.status_code == 409 and "TorchScript" in queued.json()["detail"]
    stranger = make_user()
    other = client.post(f"/api/runs/{run['id']}/explanations/{image_id}", headers=stranger.headers)
    assert other.status_code == 404
    never = client.get(f"/api/runs/{run['id']}/explanations/{image_id}", headers=user.headers)
    assert never.status_code == 404
