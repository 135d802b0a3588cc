"""Runs as first-class objects: rename, train again, deploy (the project's stable prediction
URL), delete with everything the run wrote."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.config import get_settings
from tests.conftest import ApiUser, reset_caches
from tests.factories import TINY_BACKBONE, tiny_run
from tests.runs.conftest import execute, start_run

pytestmark = pytest.mark.slow


def _picture(client: TestClient, user: ApiUser, run_id: int) -> tuple[dict, bytes]:
    stored = client.get(f"/api/runs/{run_id}/predictions", headers=user.headers).json()
    item = stored["items"][0]
    image = client.get(f"/api/images/{item['image_id']}/file", headers=user.headers).content
    return item, image


def check_deploy_help(client: TestClient, user: ApiUser, run_id: int, tmp_path: Path) -> None:
    """The Python snippet of the run page, run as copied next to the downloaded model, says
    what the server says; the bundle holds a README; the model card is served."""
    usage = client.get(f"/api/runs/{run_id}/usage", headers=user.headers).json()
    assert usage["labels"] == ["ants", "bees"]
    onnx = client.get(f"/api/runs/{run_id}/artifacts/onnx", headers=user.headers)
    folder = tmp_path / "copied"
    folder.mkdir()
    onnx_name = next(
        a["filename"]
        for a in client.get(f"/api/runs/{run_id}", headers=user.headers).json()["artifacts"]
        if a["format"] == "onnx"
    )
    (folder / onnx_name).write_bytes(onnx.content)
    item, image = _picture(client, user, run_id)
    (folder / "picture.jpg").write_bytes(image)
    printed = subprocess.run(
        [sys.executable, "-c", usage["snippets"]["python"]],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    label, probability = " ".join(printed[:-1]), float(printed[-1])
    assert label == item["predicted_label"]
    assert abs(probability - item["probabilities"][label]) < 0.02  # JPEG draft decoding aside
    for key, needle in {
        "javascript": "onnxruntime-web",
        "csharp": "Microsoft.ML.OnnxRuntime",
        "curl": usage["project_predict_url"],
    }.items():
        assert needle in usage["snippets"][key]
    assert "Authorization: Bearer" in usage["snippets"]["curl"]

    card = client.get(usage["model_card_url"], headers=user.headers)
    assert card.status_code == 200 and card.headers["content-type"].startswith("text/markdown")
    bundle = client.get(f"/api/runs/{run_id}/artifacts/bundle", headers=user.headers).content
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        (readme_name,) = [n for n in archive.namelist() if n.endswith("/README.md")]
        readme = archive.read(readme_name).decode()
    assert "pip install -r requirements.txt" in readme and "ants" in readme


def test_rename_rerun_deploy_predict_and_delete(
    client: TestClient, user: ApiUser, make_user, small_project: dict, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    pid = small_project["id"]
    run = start_run(client, user, small_project, **tiny_run(head="logreg"))
    assert run["name"] is None and run["deployed"] is False
    assert execute(run["id"]) == "succeeded"
    rid = run["id"]
    # Featurized, trained and exported with the same seeded random weights.
    metrics = client.get(f"/api/runs/{rid}", headers=user.headers).json()["metrics"]
    assert metrics["weights"]["source"] == "scratch"

    # Nothing deployed yet: the project's endpoint says what to do.
    item, image = _picture(client, user, rid)
    files = [("file", (item["filename"], image, "image/jpeg"))]
    refused = client.post(f"/api/projects/{pid}/predict", files=files, headers=user.headers)
    assert refused.status_code == 409
    assert "no deployed model" in refused.json()["detail"]

    renamed = client.patch(f"/api/runs/{rid}", json={"name": "  first try  "}, headers=user.headers)
    assert renamed.status_code == 200 and renamed.json()["name"] == "first try"
    blank = client.patch(f"/api/runs/{rid}", json={"name": " "}, headers=user.headers)
    assert blank.status_code == 422 and "run name cannot be empty" in blank.text

    deployed = client.post(f"/api/runs/{rid}/deploy", headers=user.headers)
    assert deployed.status_code == 200 and deployed.json()["deployed"] is True
    detail = client.get(f"/api/projects/{pid}", headers=user.headers).json()
    assert detail["deployed"]["run_id"] == rid
    assert detail["deployed"]["name"] == "first try"
    assert detail["deployed"]["predict_url"] == f"/api/projects/{pid}/predict"
    answer = client.post(f"/api/projects/{pid}/predict", files=files, headers=user.headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["label"] == item["predicted_label"]
    for name, p in item["probabilities"].items():
        assert abs(answer.json()["probabilities"][name] - p) < 1e-4

    # Someone else can neither deploy it nor use the project's endpoint.
    stranger = make_user()
    assert client.post(f"/api/runs/{rid}/deploy", headers=stranger.headers).status_code == 404
    other = client.post(f"/api/projects/{pid}/predict", files=files, headers=stranger.headers)
    assert other.status_code == 404

    # Train again: same mode, backbone, options and name; a queued run cannot be deployed or
    # deleted, a cancelled one can be deleted.
    again = client.post(f"/api/runs/{rid}/rerun", headers=user.headers)
    assert again.status_code == 202, again.text
    second = again.json()
    assert (second["mode"], second["backbone"], second["options"], second["name"]) == (
        run["mode"],
        run["backbone"],
        run["options"],
        "first try",
    )
    assert second["status"] == "queued" and second["id"] != rid
    assert client.post(f"/api/runs/{second['id']}/deploy", headers=user.headers).status_code == 409
    busy = client.delete(f"/api/runs/{second['id']}", headers=user.headers)
    assert busy.status_code == 409 and "cancel it first" in busy.json()["detail"]
    client.post(f"/api/runs/{second['id']}/cancel", headers=user.headers)
    assert client.delete(f"/api/runs/{second['id']}", headers=user.headers).status_code == 204

    check_deploy_help(client, user, rid, tmp_path)

    # Deleting the deployed run takes its files and the project's endpoint with it.
    folder = get_settings().run_dir(rid)
    assert (folder / "model.onnx").is_file()
    assert client.delete(f"/api/runs/{rid}", headers=user.headers).status_code == 204
    assert not Path(folder).exists()
    assert client.get(f"/api/runs/{rid}", headers=user.headers).status_code == 404
    assert client.get(f"/api/projects/{pid}", headers=user.headers).json()["deployed"] is None
    gone = client.post(f"/api/projects/{pid}/predict", files=files, headers=user.headers)
    assert gone.status_code == 409
    assert client.get(f"/api/projects/{pid}/runs", headers=user.headers).json() == []


def test_deploying_another_run_replaces_the_deployed_one_and_runs_measure_the_pace(
    client: TestClient,
    user: ApiUser,
    small_project: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cache of its own, so the first run really featurizes and measures the pace.
    monkeypatch.setenv("AUTODL_CACHE_DIR", str(tmp_path / "fresh-cache"))
    reset_caches()
    pid = small_project["id"]
    before = client.get(f"/api/projects/{pid}/estimates", headers=user.headers).json()
    assert before["backbones"] == {} and before["images"] == 40
    first = start_run(client, user, small_project, **tiny_run())
    second = start_run(client, user, small_project, **tiny_run(head="svm"))
    assert execute(first["id"]) == "succeeded"
    assert execute(second["id"]) == "succeeded"
    took = client.get(f"/api/runs/{first['id']}", headers=user.headers).json()["duration_s"]
    estimate = client.get(f"/api/projects/{pid}/estimates", headers=user.headers).json()
    measured = estimate["backbones"][TINY_BACKBONE]
    assert measured["finetune_s"] is None  # never fine-tuned here: no number is made up
    assert took / 3 <= measured["linear_s"] <= took * 3, (measured, took)
    client.post(f"/api/runs/{first['id']}/deploy", headers=user.headers)
    client.post(f"/api/runs/{second['id']}/deploy", headers=user.headers)
    runs = {
        r["id"]: r
        for r in client.get(
            f"/api/projects/{small_project['id']}/runs", headers=user.headers
        ).json()
    }
    assert runs[first["id"]]["deployed"] is False
    assert runs[second["id"]]["deployed"] is True
    undone = client.delete(f"/api/runs/{second['id']}/deploy", headers=user.headers)
    assert undone.json()["deployed"] is False
    detail = client.get(f"/api/projects/{small_project['id']}", headers=user.headers).json()
    assert detail["deployed"] is None


def test_a_label_renamed_after_a_run_is_named_on_that_run_only(
    client: TestClient, user: ApiUser, small_project: dict
) -> None:
    pid = small_project["id"]
    first = start_run(client, user, small_project, **tiny_run())
    assert execute(first["id"]) == "succeeded"
    trained = client.get(f"/api/runs/{first['id']}", headers=user.headers).json()
    labels = {lb["name"]: lb["id"] for lb in trained_labels(client, user, pid)}
    assert trained["metrics"]["label_ids"] == labels
    assert trained["renamed_labels"] == {}

    renamed = client.patch(
        f"/api/projects/{pid}/labels/{labels['bees']}",
        json={"name": "honey bees"},
        headers=user.headers,
    )
    assert renamed.status_code == 200, renamed.text
    after = client.get(f"/api/runs/{first['id']}", headers=user.headers).json()
    assert after["renamed_labels"] == {"bees": "honey bees"}
    # The model still answers with the name it learnt; the page says what it is called now.
    assert after["metrics"]["confusion_matrix"]["labels"] == ["ants", "bees"]
    listed = client.get(f"/api/projects/{pid}/runs", headers=user.headers).json()
    assert listed[0]["renamed_labels"] == {"bees": "honey bees"}

    second = start_run(client, user, small_project, **tiny_run())
    assert execute(second["id"]) == "succeeded"
    now = client.get(f"/api/runs/{second['id']}", headers=user.headers).json()
    assert now["renamed_labels"] == {}
    assert now["metrics"]["confusion_matrix"]["labels"] == ["ants", "honey bees"]


def trained_labels(client: TestClient, user: ApiUser, pid: int) -> list[dict]:
    return client.get(f"/api/projects/{pid}", headers=user.headers).json()["labels"]
