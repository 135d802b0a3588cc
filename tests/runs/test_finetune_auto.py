"""Fine-tune and auto runs through the API, the pipeline executed in-process on real images."""

from __future__ import annotations

import dataclasses

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
def test_auto_run_explains_its_choice_and_keeps_at_least_the_linear_probe(
    client: TestClient, user: ApiUser, small_project: dict, redis_url: str
) -> None:
    run = start_run(client, user, small_project, mode="auto", backbone="tf_efficientnet_lite0")
    assert execute(run["id"]) == "succeeded"

    body = client.get(f"/api/runs/{run['id']}", headers=user.headers).json()
    decision = body["decision"]
    assert decision["reason"].strip()
    names = [c["backbone"] for c in decision["candidates"]]
    # Every backbone with weights on this machine competed: the three bundled ones.
    assert {"tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"} <= set(names)
    for candidate in decision["candidates"]:
        assert {"backbone", "score", "cv_accuracy", "seconds"} <= set(candidate)
    chosen = decision["chosen"]
    assert chosen["backbone"] == names[0]
    # 10 images per label on a CPU: not worth fine-tuning, and the reason says so.
    assert chosen["mode"] == "linear"
    assert "Fine-tuning was skipped" in decision["reason"]
    assert body["metrics"]["accuracy"] >= chosen["linear_val_accuracy"]
    assert_predict_matches_stored(client, user, run["id"])


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
