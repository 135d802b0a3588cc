"""The same API flows on PostgreSQL: migrations, uploads, counts, ownership, a training run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect

from tests.conftest import ApiUser, hymenoptera_zip

pytestmark = pytest.mark.postgres


def test_migrations_create_every_table(client: TestClient, database_url: str) -> None:
    engine = create_engine(database_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {
        "user",
        "api_token",
        "project",
        "label",
        "image",
        "run",
        "prediction",
        "artifact",
        "alembic_version",
    } <= tables


def test_production_database_refuses_the_default_secret_key(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.config import DEFAULT_SECRET_KEY, Settings

    monkeypatch.setenv("AUTODL_SECRET_KEY", DEFAULT_SECRET_KEY)
    with pytest.raises(RuntimeError, match="AUTODL_SECRET_KEY"):
        Settings().check_production()


def test_upload_relabel_and_counts_on_postgres(
    client: TestClient,
    user: ApiUser,
    project: dict,
    hymenoptera: Path,
    make_user: Callable[..., ApiUser],
) -> None:
    pid = project["id"]
    archive = hymenoptera_zip(hymenoptera, per_class=3)
    report = client.post(
        f"/api/projects/{pid}/images",
        files=[("files", ("few.zip", archive, "application/zip"))],
        headers=user.headers,
    ).json()
    assert len(report["accepted"]) == 12
    again = client.post(
        f"/api/projects/{pid}/images",
        files=[("files", ("few.zip", archive, "application/zip"))],
        headers=user.headers,
    ).json()
    assert len(again["duplicates"]) == 12 and not again["accepted"]

    ants = client.get(f"/api/projects/{pid}/images?label=ants", headers=user.headers).json()
    assert ants["total"] == 6
    moved = client.patch(
        f"/api/projects/{pid}/images",
        json={"ids": [ants["items"][0]["id"]], "label": "wasps"},
        headers=user.headers,
    )
    assert moved.status_code == 200
    detail = client.get(f"/api/projects/{pid}", headers=user.headers).json()
    counts = {label["name"]: label["count"] for label in detail["labels"]}
    assert counts == {"ants": 5, "bees": 6, "wasps": 1}
    assert detail["splits"]["train"] == 6 and detail["splits"]["val"] == 6

    other = make_user()
    assert client.get(f"/api/projects/{pid}", headers=other.headers).status_code == 404
    image_id = ants["items"][1]["id"]
    assert client.get(f"/api/images/{image_id}/file", headers=other.headers).status_code == 404
