"""Shared fixtures: a fresh migrated database and data directory per test, users, projects."""

from __future__ import annotations

import io
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

REPO_ROOT = Path(__file__).resolve().parents[1]
HYMENOPTERA = REPO_ROOT.parent / "shared" / "datasets" / "hymenoptera"
POSTGRES_ADMIN_URL = os.environ.get(
    "AUTODL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_TEST_URL = os.environ.get("AUTODL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_test_db(purpose: str, default: int) -> str:
    """A Redis database of its own per purpose; AUTODL_TEST_REDIS_DB_<PURPOSE> moves it, so
    that two checkouts can run the suite at once on one Redis server without flushing each
    other's queues."""
    db = os.environ.get(f"AUTODL_TEST_REDIS_DB_{purpose.upper()}", str(default))
    return REDIS_TEST_URL.rsplit("/", 1)[0] + f"/{db}"


def require_hymenoptera() -> Path:
    """The shared real dataset; CI must have it, a developer checkout may not."""
    if not HYMENOPTERA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{HYMENOPTERA} is missing on CI")
        pytest.skip(f"real dataset not found at {HYMENOPTERA} (it lives in ../shared)")
    return HYMENOPTERA


@pytest.fixture(scope="session")
def hymenoptera() -> Path:
    return require_hymenoptera()


@pytest.fixture(scope="session")
def shared_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exported feature models and embeddings, reused by every training test of the session."""
    return tmp_path_factory.mktemp("embedding-cache")


def reset_caches() -> None:
    from backend.config import get_settings
    from backend.db import get_engine, get_sessionmaker
    from backend.queue import celery_client

    if get_engine.cache_info().currsize:
        get_engine().dispose()
    for cached in (get_settings, get_engine, get_sessionmaker, celery_client):
        cached.cache_clear()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite by default; tests/db overrides this to run the same flows on PostgreSQL."""
    return f"sqlite:///{tmp_path / 'data' / 'autodl.db'}"


@pytest.fixture
def redis_url() -> str:
    return ""


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database migrated once; each test starts from a copy (the app still upgrades it)."""
    from backend import migrations

    path = tmp_path_factory.mktemp("template") / "autodl.db"
    migrations.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def settings_env(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    sqlite_template: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    data_dir = tmp_path / "data"
    if database_url == f"sqlite:///{data_dir / 'autodl.db'}":
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sqlite_template, data_dir / "autodl.db")
    # Cheap password hashing: the tests sign up hundreds of users.
    monkeypatch.setenv("AUTODL_PASSWORD_HASH_TIME_COST", "1")
    monkeypatch.setenv("AUTODL_PASSWORD_HASH_MEMORY_KIB", "1024")
    monkeypatch.setenv("AUTODL_DATA_DIR", str(data_dir))
    monkeypatch.setenv("AUTODL_DATABASE_URL", database_url)
    monkeypatch.setenv("AUTODL_REDIS_URL", redis_url)
    monkeypatch.setenv("AUTODL_SECRET_KEY", "test-secret-" + uuid.uuid4().hex)
    # Most tests sign up several users; tests/auth/test_accounts.py covers the other modes.
    monkeypatch.setenv("AUTODL_SIGNUP", "open")
    # ... and log in often from one address; tests/auth/test_rate_limits.py sets its own.
    for limit in ("LOGIN", "LOGIN_ACCOUNT", "SIGNUP", "TOKENS"):
        monkeypatch.setenv(f"AUTODL_RATE_LIMIT_{limit}", "10000/minute")
    reset_caches()
    yield data_dir
    reset_caches()


@pytest.fixture
def client(settings_env: Path) -> Iterator[TestClient]:
    from backend.app import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


@dataclass
class ApiUser:
    email: str
    token: str
    headers: dict[str, str]


@pytest.fixture
def make_user(client: TestClient) -> Callable[..., ApiUser]:
    def make(email: str | None = None, password: str = "correct horse battery") -> ApiUser:
        email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
        response = client.post("/api/auth/signup", json={"email": email, "password": password})
        assert response.status_code == 201, response.text
        client.cookies.clear()  # tests authenticate with bearer tokens unless they opt in
        token = response.json()["token"]
        return ApiUser(email, token, {"Authorization": f"Bearer {token}"})

    return make


@pytest.fixture
def user(make_user: Callable[..., ApiUser]) -> ApiUser:
    return make_user()


@pytest.fixture
def project(client: TestClient, user: ApiUser) -> dict:
    response = client.post("/api/projects", json={"name": "Insects"}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


def make_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def hymenoptera_zip(root: Path, per_class: int | None = None) -> bytes:
    """A zip laid out as train/ants/x.jpg, val/bees/y.jpg; optionally a few per class."""
    entries: dict[str, bytes] = {}
    for split in ("train", "val"):
        for label in ("ants", "bees"):
            files = sorted((root / split / label).iterdir())
            for path in files[:per_class] if per_class else files:
                entries[f"{split}/{label}/{path.name}"] = path.read_bytes()
    return make_zip(entries)
