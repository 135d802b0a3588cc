"""GET/POST /api/projects/{pid}/health, fixes where found, undo: real images, real Redis."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from backend.config import get_settings
from backend.images.orphans import remove_orphans
from backend.storage import ImageStore
from tests.conftest import ApiUser, hymenoptera_zip
from tests.health.conftest import examine_now
from tests.worker.planted import near_copy

KEYS = {"status", "computed_at", "findings", "label_issues", "duplicates", "domain_fit"}


def upload(client: TestClient, user: ApiUser, project: dict, files: list, **form: str) -> dict:
    response = client.post(
        f"/api/projects/{project['id']}/images", files=files, data=form, headers=user.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def fix(client: TestClient, user: ApiUser, project: dict, **body: object) -> dict:
    response = client.post(
        f"/api/projects/{project['id']}/health/fixes", json=body, headers=user.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_an_upload_queues_a_check_whose_report_has_the_documented_shape(
    client: TestClient,
    user: ApiUser,
    small_project: dict,
    health: Callable[..., dict],
    queued_messages: Callable[[str], int],
) -> None:
    waiting = health(small_project)
    assert waiting["status"] == "computing" and waiting["stage"] == "queued"
    assert "Waiting for a worker" in waiting["message"]
    assert waiting["findings"] == [] and waiting["domain_fit"] is None
    assert queued_messages("cpu") == 1

    assert examine_now(small_project["id"]) == "ready"
    report = health(small_project)
    assert set(report) >= KEYS | {"suggestions", "labels_needed", "estimate"}
    assert report["status"] == "ready" and report["current"] is True
    assert report["backbone"] == "tf_efficientnet_lite0"
    assert report["domain_fit"]["verdict"] in ("good", "fair")
    assert report["stats"]["images"] == 40
    for finding in report["findings"]:
        assert {"kind", "severity", "count", "message", "image_ids"} <= set(finding)
    assert report["labels_needed"]["labels"]["ants"]["have"] == 20
    # A redelivered task for the same generation does nothing.
    assert examine_now(small_project["id"]) == "skipped"


def test_no_images_one_label_or_images_not_featurized_get_a_message_not_a_report(
    client: TestClient, user: ApiUser, project: dict, hymenoptera: Path, health: Callable
) -> None:
    empty = health(project, status=409)
    assert "no images yet" in empty["detail"]
    started = client.post(f"/api/projects/{project['id']}/health", headers=user.headers)
    assert started.status_code == 409 and "no images yet" in started.json()["detail"]

    ants = sorted((hymenoptera / "train" / "ants").iterdir())[:5]
    upload(client, user, project, [("files", (p.name, p.read_bytes())) for p in ants], label="ants")
    one = health(project, status=409)
    assert "at least 2 labels" in one["detail"] and "“ants”" in one["detail"]

    bees = sorted((hymenoptera / "train" / "bees").iterdir())[:5]
    upload(client, user, project, [("files", (p.name, p.read_bytes())) for p in bees], label="bees")
    from backend.db import session_scope
    from backend.health.models import HealthReport

    with session_scope() as session:  # a worker half-way through featurizing
        row = session.query(HealthReport).filter_by(project_id=project["id"]).one()
        row.stage, row.backbone, row.images_done, row.images_total = (
            "featurizing",
            "tf_efficientnet_lite0",
            4,
            10,
        )
    busy = health(project)
    assert busy["status"] == "computing" and busy["findings"] == []
    assert "not featurized yet" in busy["message"] and "4 of 10" in busy["message"]


def test_a_leaking_copy_is_found_moved_into_its_originals_split_and_the_move_undone(
    client: TestClient,
    user: ApiUser,
    small_project: dict,
    hymenoptera: Path,
    health: Callable[..., dict],
) -> None:
    original = sorted((hymenoptera / "train" / "bees").iterdir())[0]
    copy = upload(
        client,
        user,
        small_project,
        [("files", ("copy.jpg", near_copy(original, 0)))],
        label="bees",
        split="val",
    )["accepted"][0]["id"]
    examine_now(small_project["id"])
    report = health(small_project)
    [group] = [g for g in report["duplicates"] if copy in g["image_ids"]]
    assert group["across_splits"] and not group["across_labels"]
    assert sorted(group["splits"]) == ["train", "val"]
    leakage = next(f for f in report["findings"] if f["kind"] == "leakage")
    assert leakage["severity"] == "error" and copy in leakage["image_ids"]

    moved = fix(client, user, small_project, ids=[copy], split="train", recheck=False)
    assert moved["updated"] == 1 and "moved to train" in moved["message"]
    [group] = [g for g in health(small_project)["duplicates"] if copy in g["image_ids"]]
    assert not group["across_splits"]

    undone = client.post(
        f"/api/projects/{small_project['id']}/health/fixes/{moved['edit_id']}/undo",
        headers=user.headers,
    )
    assert undone.status_code == 200 and undone.json()["restored"] == 1
    image = client.get(f"/api/images/{copy}", headers=user.headers).json()
    assert image["split"] == "val"
    again = client.post(
        f"/api/projects/{small_project['id']}/health/fixes/{moved['edit_id']}/undo",
        headers=user.headers,
    )
    assert again.status_code == 409


def test_relabelling_the_likely_errors_is_measured_as_an_accuracy_change(
    client: TestClient,
    user: ApiUser,
    hymenoptera_project: dict,
    health: Callable[..., dict],
) -> None:
    pid = hymenoptera_project["id"]
    images = client.get(
        f"/api/projects/{pid}/images", params={"split": "train", "limit": 500}, headers=user.headers
    ).json()["items"]
    flipped = [im for im in images if im["label"] == "ants"][:12]
    response = client.patch(
        f"/api/projects/{pid}/images",
        json={"ids": [im["id"] for im in flipped], "label": "bees"},
        headers=user.headers,
    )
    assert response.status_code == 200
    client.post(f"/api/projects/{pid}/health", headers=user.headers)
    examine_now(pid)
    report = health(hymenoptera_project)
    issues = report["label_issues"]
    assert issues and issues == sorted(issues, key=lambda i: -i["score"])
    found = [i for i in issues if i["image_id"] in {im["id"] for im in flipped}]
    assert len(found) >= 8
    for issue in found:
        assert issue["given_label"] == "bees" and issue["suggested_label"] == "ants"
        fix(
            client,
            user,
            hymenoptera_project,
            ids=[issue["image_id"]],
            label=issue["suggested_label"],
            source="label_issues",
            recheck=False,
        )
    # Relabelled issues leave the queue at once.
    assert not {i["image_id"] for i in health(hymenoptera_project)["label_issues"]} & {
        i["image_id"] for i in found
    }

    client.post(f"/api/projects/{pid}/health", headers=user.headers)
    examine_now(pid)
    effect = health(hymenoptera_project)["effect"]
    assert effect["relabelled"] == len(found)
    assert effect["accuracy_after"] > effect["accuracy_before"]
    assert f"Relabelled {len(found)}, accuracy re-estimated" in effect["message"]


def test_suggestions_above_a_confidence_are_accepted_in_bulk_and_undone(
    client: TestClient,
    user: ApiUser,
    project: dict,
    hymenoptera: Path,
    health: Callable[..., dict],
) -> None:
    zipped = hymenoptera_zip(hymenoptera, per_class=15)
    upload(client, user, project, [("files", ("labelled.zip", zipped, "application/zip"))])
    unlabelled = sorted((hymenoptera / "val" / "bees").iterdir())[20:30]
    upload(client, user, project, [("files", (p.name, p.read_bytes())) for p in unlabelled])
    examine_now(project["id"])
    report = health(project)
    assert len(report["suggestions"]) == 10
    sure = [s for s in report["suggestions"] if s["confidence"] >= 0.8]
    assert sure

    accepted = client.post(
        f"/api/projects/{project['id']}/health/suggestions/accept",
        json={"min_confidence": 0.8, "recheck": False},
        headers=user.headers,
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["updated"] == len(sure)
    left = client.get(
        f"/api/projects/{project['id']}/images", params={"unlabeled": True}, headers=user.headers
    ).json()
    assert left["total"] == 10 - len(sure)
    assert len(health(project)["suggestions"]) == 10 - len(sure)

    client.post(
        f"/api/projects/{project['id']}/health/fixes/{accepted.json()['edit_id']}/undo",
        headers=user.headers,
    )
    left = client.get(
        f"/api/projects/{project['id']}/images", params={"unlabeled": True}, headers=user.headers
    ).json()
    assert left["total"] == 10
    nothing = client.post(
        f"/api/projects/{project['id']}/health/suggestions/accept",
        json={"min_confidence": 1.0},
        headers=user.headers,
    )
    assert nothing.status_code == 409 and "confident" in nothing.json()["detail"]


def test_fixes_check_ownership_and_input(
    client: TestClient,
    user: ApiUser,
    make_user: Callable[..., ApiUser],
    small_project: dict,
    health: Callable[..., dict],
) -> None:
    pid = small_project["id"]
    ids = [
        im["id"]
        for im in client.get(f"/api/projects/{pid}/images", headers=user.headers).json()["items"]
    ]
    stranger = make_user()
    assert client.get(f"/api/projects/{pid}/health", headers=stranger.headers).status_code == 404
    response = client.post(
        f"/api/projects/{pid}/health/fixes", json={"ids": ids[:1]}, headers=user.headers
    )
    assert response.status_code == 422 and "Say what to change" in response.json()["detail"]
    response = client.post(
        f"/api/projects/{pid}/health/fixes",
        json={"ids": [ids[0], 10**9], "split": "val"},
        headers=user.headers,
    )
    assert response.status_code == 404 and "not in this project" in response.json()["detail"]
    response = client.post(
        f"/api/projects/{pid}/health/fixes",
        json={"ids": ids[:1], "split": "nowhere"},
        headers=user.headers,
    )
    assert response.status_code == 422
    assert client.get(f"/api/projects/{pid}/health", headers=user.headers).status_code == 200


def test_a_finished_run_asks_for_a_fresh_report(
    client: TestClient, user: ApiUser, small_project: dict
) -> None:
    from backend.db import session_scope
    from backend.health.models import HealthReport
    from tests.factories import tiny_run
    from tests.runs.conftest import start_run
    from worker.tasks import train_run

    run = start_run(client, user, small_project, mode="linear", **tiny_run())
    assert train_run(run["id"]) == "succeeded"
    with session_scope() as session:
        row = session.query(HealthReport).filter_by(project_id=small_project["id"]).one()
        assert row.requested == 2  # the upload's request, then the run's


def test_a_deletion_from_the_doctor_is_undone_with_its_label_split_and_file(
    client: TestClient, user: ApiUser, small_project: dict
) -> None:
    pid = small_project["id"]
    items = client.get(f"/api/projects/{pid}/images", headers=user.headers).json()["items"]
    victims = [im for im in items if im["split"] == "val"][:2]
    files = {
        im["id"]: client.get(f"/api/images/{im['id']}/file", headers=user.headers).content
        for im in victims
    }
    deleted = client.post(
        f"/api/projects/{pid}/health/fixes/delete",
        json={"ids": [im["id"] for im in victims], "source": "label_issues", "recheck": False},
        headers=user.headers,
    )
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["updated"] == 2 and deleted.json()["message"] == "2 images deleted."
    for im in victims:
        assert client.get(f"/api/images/{im['id']}", headers=user.headers).status_code == 404
    total = client.get(f"/api/projects/{pid}/images", headers=user.headers).json()["total"]
    assert total == len(items) - 2
    # The files wait for the undo: `autodl gc` (no grace period here) leaves them.
    remove_orphans(get_settings(), grace_s=0)
    store = ImageStore(get_settings())
    assert all(store.has(hashlib.sha256(data).hexdigest()) for data in files.values())

    edit = deleted.json()["edit_id"]
    undo = client.post(
        f"/api/projects/{pid}/health/fixes/{edit}/undo?recheck=false", headers=user.headers
    )
    assert undo.status_code == 200, undo.text
    assert undo.json() == {"restored": 2, "message": "Undone: 2 images restored."}
    for im in victims:
        back = client.get(f"/api/images/{im['id']}", headers=user.headers).json()
        same = ("filename", "label", "split", "split_source", "width", "height", "size_bytes")
        assert {k: back[k] for k in same} == {k: im[k] for k in same}
        file = client.get(f"/api/images/{im['id']}/file", headers=user.headers)
        assert file.status_code == 200 and file.content == files[im["id"]]
        thumb = client.get(f"/api/images/{im['id']}/thumbnail", headers=user.headers)
        assert thumb.status_code == 200
    again = client.post(f"/api/projects/{pid}/health/fixes/{edit}/undo", headers=user.headers)
    assert again.status_code == 409 and "already been undone" in again.json()["detail"]

    missing = client.post(
        f"/api/projects/{pid}/health/fixes/delete", json={"ids": [10**9]}, headers=user.headers
    )
    assert missing.status_code == 404 and "not in this project" in missing.json()["detail"]
