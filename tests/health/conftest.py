"""Health tests use the runs tests' real Redis and run the queued check in-process."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ApiUser
from tests.runs.conftest import (  # noqa: F401  (fixtures)
    hymenoptera_project,
    queued_messages,
    redis_url,
    small_project,
)


def examine_now(project_id: int) -> str:
    """Run the check the API queued for ``project_id``, as a worker would."""
    from backend.db import session_scope
    from backend.health.models import HealthReport
    from worker.health import examine_project

    with session_scope() as session:
        row = session.query(HealthReport).filter_by(project_id=project_id).one()
        generation = row.requested
    return examine_project(project_id, generation)


@pytest.fixture
def health(client: TestClient, user: ApiUser) -> Callable[..., dict]:
    """GET the report (200 expected unless ``status`` says otherwise)."""

    def get(project: dict, status: int = 200) -> dict:
        response = client.get(f"/api/projects/{project['id']}/health", headers=user.headers)
        assert response.status_code == status, response.text
        return response.json()

    return get
