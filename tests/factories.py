"""Users, projects and images made through the services and the ORM, without HTTP: for tests
where sign-up, project creation or uploading is not what is tested. They write to the
database of the test's settings (the ``settings_env`` fixture), like the app would."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import func, select

from backend.auth import service as auth
from backend.auth.models import User
from backend.auth.security import hash_password
from backend.config import get_settings
from backend.db import session_scope
from backend.images.ingest import IngestReport, UploadSource, ingest_files
from backend.projects import service as projects
from backend.projects.models import Project

DEFAULT_PASSWORD = "correct horse battery"


@dataclass
class ApiUser:
    email: str
    token: str
    headers: dict[str, str]
    id: int


@lru_cache
def _password_hash(password: str, time_cost: int, memory_kib: int) -> str:
    return hash_password(password)


def create_user(
    email: str | None = None, password: str = DEFAULT_PASSWORD, *, admin: bool | None = None
) -> ApiUser:
    """An account and a session token. Like sign-up, the first account is the admin unless
    ``admin`` says otherwise; the password's hash is computed once per password."""
    email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
    settings = get_settings()
    password_hash = _password_hash(
        password, settings.password_hash_time_cost, settings.password_hash_memory_kib
    )
    with session_scope() as session:
        if admin is None:
            admin = not session.scalar(select(func.count()).select_from(User))
        user = User(email=email, password_hash=password_hash, is_admin=admin)
        session.add(user)
        session.flush()
        token = auth.issue_session(session, user, name="test")
        user_id = user.id
    return ApiUser(email, token, {"Authorization": f"Bearer {token}"}, user_id)


def create_project(owner: ApiUser, name: str = "Insects") -> dict:
    """A project of ``owner``, as ``POST /api/projects`` answers it."""
    with session_scope() as session:
        user = session.get_one(User, owner.id)
        project = projects.create_project(session, user, name)
        return projects.project_detail(session, project).model_dump(mode="json")


def add_images(
    project: dict,
    files: dict[str, bytes],
    *,
    label: str | None = None,
    split: str | None = None,
) -> IngestReport:
    """Pictures (or zips) added the way an upload adds them, through the ingest service."""
    sources = [UploadSource(name, io.BytesIO(data)) for name, data in files.items()]
    with session_scope() as session:
        row = session.get_one(Project, project["id"])
        return ingest_files(session, get_settings(), row, sources, label=label, split=split)


# timm's smallest test network (0.1 M parameters, 160 px input) with create_backbone's seeded
# random weights: for tests of mechanics (run states, export, downloads, API plumbing), where
# what the backbone has learnt is not the point. Tests of accuracy keep the real weights.
TINY_BACKBONE = "test_efficientnet"


def tiny_run(**options: object) -> dict:
    """The body of a run request (``start_run(..., **tiny_run())``) for TINY_BACKBONE."""
    return {"backbone": TINY_BACKBONE, "options": {"pretrained": False, **options}}
