"""Shared fixtures: a fresh migrated database and data directory per test, users, projects."""

from __future__ import annotations

import io
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import redis
from fastapi.testclient import TestClient

from tests.factories import ApiUser, create_project, create_user

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


def missing(what: str) -> NoReturn:
    """Something a test needs (a server, Chromium, the shared dataset) is not there: CI must
    have it, so the test fails there; a developer checkout may not, so it is skipped."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must provide it)")
    pytest.skip(what)


def require_redis(url: str) -> redis.Redis:
    """A client of the real Redis at ``url``, or ``missing``."""
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError:
        missing(f"Redis is not reachable at {url}: start redis-server")
    return client


def require_hymenoptera() -> Path:
    """The shared real dataset."""
    if not HYMENOPTERA.is_dir():
        missing(f"the real dataset is not at {HYMENOPTERA} (it lives in ../shared)")
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
    from backend.queue import broker_redis, celery_client
    from backend.storage import get_storage

    if get_engine.cache_info().currsize:
        get_engine().dispose()
    for cached in (
        get_settings,
        get_engine,
        get_sessionmaker,
        celery_client,
        broker_redis,
        get_storage,
    ):
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
    # No background recovery sweep in in-process apps: tests call backend.runs.recovery
    # themselves, and the fault tests (tests/fleet) run it in real servers.
    monkeypatch.setenv("AUTODL_RECOVERY_SWEEP_S", "0")
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


@pytest.fixture
def make_user(client: TestClient) -> Callable[..., ApiUser]:
    """Accounts made through the services (the first is the admin, as after sign-up), with a
    bearer session token; tests about sign-up itself post to /api/auth/signup."""
    return create_user


@pytest.fixture
def user(make_user: Callable[..., ApiUser]) -> ApiUser:
    return make_user()


@pytest.fixture
def project(client: TestClient, user: ApiUser) -> dict:
    return create_project(user)


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
