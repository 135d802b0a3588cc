"""A run says which runtime and precision featurized it; the first run big enough measures
the CPU paths once (per backbone and machine), the next ones reuse that choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ApiUser, make_zip, reset_caches
from tests.factories import TINY_BACKBONE, create_project, tiny_run
from tests.runs.conftest import execute, start_run


def _upload(client: TestClient, user: ApiUser, project: dict, root: Path, part: slice) -> None:
    """Real hymenoptera pictures: ``part`` of each label's files in each split."""
    entries = {
        f"{split}/{label}/{path.name}": path.read_bytes()
        for split in ("train", "val")
        for label in ("ants", "bees")
        for path in sorted((root / split / label).iterdir())[part]
    }
    response = client.post(
        f"/api/projects/{project['id']}/images",
        files=[("files", ("part.zip", make_zip(entries), "application/zip"))],
        headers=user.headers,
    )
    assert response.status_code == 200 and len(response.json()["accepted"]) == 40


@pytest.mark.slow
def test_the_first_run_measures_the_paths_and_the_next_one_uses_the_choice(
    client: TestClient,
    user: ApiUser,
    hymenoptera: Path,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pipeline end to end on the tiny backbone (tests/worker/test_precision.py checks
    the same with real weights): metrics, API and model card name the path."""
    import torch

    from worker.ml import precision

    if torch.cuda.is_available():
        pytest.skip("a GPU featurizes in PyTorch: no CPU path is measured")
    # A cache of its own: a choice made on these few images must not reach other tests.
    cache = tmp_path / "cache"
    monkeypatch.setenv("AUTODL_CACHE_DIR", str(cache))
    reset_caches()
    monkeypatch.setattr(precision, "CHECK_MIN_IMAGES", 16)  # 20 per split here, not 50

    first_project = create_project(user, name="first")
    _upload(client, user, first_project, hymenoptera, slice(0, 10))
    first = start_run(client, user, first_project, **tiny_run())
    assert execute(first["id"]) == "succeeded"
    done = client.get(f"/api/runs/{first['id']}", headers=user.headers).json()
    used = done["metrics"]["runtimes"][TINY_BACKBONE]
    print(used)
    assert used["train"] == used["held_out"] == "onnxruntime f32"  # the reference, this once
    if not precision.cpu_caps().worth_measuring:  # nothing faster here: nothing measured
        assert not used["measured_in_run"] and not (cache / "runtimes").exists()
        return
    assert used["measured_in_run"] and used["measured_at"]
    (record,) = (cache / "runtimes").glob("*.json")
    chosen = json.loads(record.read_text())
    stamp = record.stat().st_mtime_ns

    # New pictures: the second run reuses the choice (no measurement) for its training images.
    second_project = create_project(user, name="second")
    _upload(client, user, second_project, hymenoptera, slice(10, 20))
    second = start_run(client, user, second_project, **tiny_run())
    assert execute(second["id"]) == "succeeded"
    again = client.get(f"/api/runs/{second['id']}", headers=user.headers).json()
    used = again["metrics"]["runtimes"][TINY_BACKBONE]
    print(used)
    assert not used["measured_in_run"] and used["measured_at"] == chosen["measured_at"]
    assert record.stat().st_mtime_ns == stamp
    assert used["train"] == f"{chosen['runtime']} {chosen['precision']}"
    assert used["held_out"] == "onnxruntime f32"
    assert again["metrics"]["featurized"]["computed"] == 40
    # Each precision has its own cache folder: two once the training images' path is not fp32.
    folders = list((cache / "embeddings").iterdir())
    assert len(folders) == (1 if chosen["precision"] == "f32" else 2)
    card = client.get(f"/api/runs/{second['id']}/model-card", headers=user.headers).text
    assert f"training pictures with {used['train']}" in card
