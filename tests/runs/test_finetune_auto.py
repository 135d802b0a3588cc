"""Fine-tune and auto runs through the API, the pipeline executed in-process on real images."""

from __future__ import annotations

import dataclasses
import io
import time
import zipfile

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ApiUser
from tests.factories import tiny_run
from tests.runs.conftest import assert_predict_matches_stored, execute, start_run


@pytest.mark.slow
def test_finetune_run_survives_out_of_memory_and_exports_a_model_with_curves(
    client: TestClient,
    user: ApiUser,
    small_project: dict,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import worker.modes.finetune as finetune_mode

    original = finetune_mode.finetune_config

    def out_of_memory_above_4(*args: object, **kwargs: object) -> object:
        # As if the GPU held at most 4 images: every larger batch raises OutOfMemoryError.
        return dataclasses.replace(original(*args, **kwargs), oom_above=4)  # type: ignore[arg-type]

    monkeypatch.setattr(finetune_mode, "finetune_config", out_of_memory_above_4)
    run = start_run(
        client,
        user,
        small_project,
        mode="finetune",
        **tiny_run(epochs=1, batch_size=8, train_layers="last_blocks"),
    )
    assert execute(run["id"]) == "succeeded"

    body = client.get(f"/api/runs/{run['id']}", headers=user.headers).json()
    assert body["status"] == "succeeded"
    history = body["history"]
    assert len(history) == 1
    assert set(history[0]) >= {"epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds"}
    metrics = body["metrics"]
    assert metrics["batch_size"] == 4  # 8 did not fit: halved, and the run went on
    assert metrics["finetune"]["batch_size_requested"] == 8
    assert metrics["finetune"]["out_of_memory_halvings"] == 1
    # Best epoch 0 would mean training never beat the linear-probe start, which is kept.
    assert metrics["epochs_run"] == 1 and metrics["best_epoch"] in (0, 1)
    assert metrics["n_train"] == 20 and metrics["n_val"] == 20
    assert {"accuracy", "balanced_accuracy", "per_class", "confusion_matrix"} <= set(metrics)
    assert {"featurize_s", "finetune_s", "export_s"} <= set(metrics["timings"])

    artifacts = client.get(f"/api/runs/{run['id']}/artifacts", headers=user.headers).json()
    assert "onnx" in [a["format"] for a in artifacts]
    assert_predict_matches_stored(client, user, run["id"])


@pytest.mark.slow
def test_auto_run_combines_the_backbones_explains_why_and_exports_the_whole_ensemble(
    client: TestClient, user: ApiUser, small_project: dict, redis_url: str
) -> None:
    run = start_run(client, user, small_project, mode="auto", backbone="tf_efficientnet_lite0")
    assert execute(run["id"]) == "succeeded"

    body = client.get(f"/api/runs/{run['id']}", headers=user.headers).json()
    decision = body["decision"]
    assert decision["reason"].strip()
    bundled = {"tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"}
    # Every backbone with weights on this machine competed, alone and combined, both views.
    singles = [c for c in decision["candidates"] if c["kind"] == "single"]
    assert {b for c in singles for b in c["backbones"]} == bundled
    assert {c["kind"] for c in decision["candidates"]} == {"single", "average", "concat"}
    assert {c["flip"] for c in decision["candidates"]} == {False, True}
    kept = [c for c in decision["candidates"] if c["kept"]]
    assert len(kept) == 1
    assert kept[0]["cv_log_loss"] == min(c["cv_log_loss"] for c in decision["candidates"])
    for candidate in decision["candidates"]:
        assert 0.0 <= candidate["cv_accuracy"] <= 1.0 and candidate["cv_log_loss"] > 0.0
    # One answer to "what was trained": metrics.model, the run's backbones, the decision.
    model = body["metrics"]["model"]
    assert model["mode"] == "linear"
    assert body["backbones"] == model["backbones"] == decision["chosen"]["backbones"]
    assert set(model["backbones"]) <= bundled
    assert body["metrics"]["ensemble"]["members"]
    # 10 images per label on a CPU: not worth fine-tuning, and the reason says so.
    assert decision["chosen"]["mode"] == "linear"
    assert "Fine-tuning was skipped" in decision["reason"]
    assert_predict_matches_stored(client, user, run["id"])

    # The downloaded files are named after, and contain, every member backbone.
    wait_for_exports(client, user, run["id"])
    artifacts = {
        a["format"]: a
        for a in client.get(f"/api/runs/{run['id']}/artifacts", headers=user.headers).json()
    }
    assert set(artifacts) == {"onnx", "torchscript", "onnx-int8", "bundle"}
    slug = "+".join(model["backbones"])
    assert all(slug in a["filename"] for a in artifacts.values())
    bundle = client.get(artifacts["bundle"]["url"], headers=user.headers).content
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        card = next(
            archive.read(n).decode() for n in archive.namelist() if n.endswith("MODEL_CARD.md")
        )
    for backbone in model["backbones"]:
        assert f"`{backbone}`" in card
    assert model["head"] in card


def wait_for_exports(client: TestClient, user: ApiUser, run_id: int) -> None:
    """TorchScript and the bundle are made after the run succeeds; wait for them."""
    for _ in range(1200):
        metrics = client.get(f"/api/runs/{run_id}", headers=user.headers).json()["metrics"]
        if not metrics["exports_pending"]:
            assert not metrics["export_errors"], metrics["export_errors"]
            return
        time.sleep(0.5)
    raise AssertionError("exports still pending after 10 minutes")


@pytest.mark.slow
def test_auto_run_that_fine_tunes_keeps_the_better_model(
    client: TestClient,
    user: ApiUser,
    small_project: dict,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import worker.modes.auto as auto

    monkeypatch.setattr(auto, "should_finetune", lambda *a: (True, "Fine-tuning was forced."))
    run = start_run(
        client,
        user,
        small_project,
        mode="auto",
        options={"candidates": ["tf_efficientnet_lite0"], "epochs": 1, "batch_size": 8},
    )
    assert execute(run["id"]) == "succeeded"

    body = client.get(f"/api/runs/{run['id']}", headers=user.headers).json()
    chosen = body["decision"]["chosen"]
    assert chosen["finetune_val_accuracy"] is not None
    assert body["metrics"]["accuracy"] == max(
        chosen["linear_val_accuracy"], chosen["finetune_val_accuracy"]
    )
    assert body["metrics"]["accuracy"] >= chosen["linear_val_accuracy"]
    assert len(body["history"]) == 1
    assert "kept" in body["decision"]["reason"]
