"""Settings that protect production: the secret key must be a real random secret."""

from __future__ import annotations

import secrets

import pytest
from fastapi.testclient import TestClient

from backend.config import DEFAULT_SECRET_KEY, Settings
from tests.conftest import reset_caches

POSTGRES = "postgresql+psycopg://autodl@db/autodl"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "x",
        DEFAULT_SECRET_KEY,
        "x" * 200,
        "hunter2" * 20,
        "correct horse battery staple",
        secrets.token_urlsafe(16),
        secrets.token_hex(16),
    ],
)
def test_production_refuses_a_guessable_secret_key(key: str) -> None:
    settings = Settings(database_url=POSTGRES, secret_key=key)
    with pytest.raises(RuntimeError, match="32 random bytes"):
        settings.check_production()


@pytest.mark.parametrize("key", [secrets.token_urlsafe(32), secrets.token_hex(32)])
def test_production_accepts_32_random_bytes(key: str) -> None:
    Settings(database_url=POSTGRES, secret_key=key).check_production()


def test_sqlite_development_runs_with_the_default_key() -> None:
    Settings(database_url="sqlite:///x.db", secret_key=DEFAULT_SECRET_KEY).check_production()


def test_the_app_does_not_start_on_a_production_database_with_a_guessable_key(
    tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The check runs when the app starts (``autodl serve`` starts it the same way), before
    the database is touched: this one is never reachable."""
    from backend.app import create_app

    monkeypatch.setenv("AUTODL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AUTODL_DATABASE_URL", "postgresql+psycopg://autodl@127.0.0.1:9/autodl")
    monkeypatch.setenv("AUTODL_SECRET_KEY", "hunter2" * 20)
    reset_caches()
    try:
        with pytest.raises(RuntimeError, match="32 random bytes"), TestClient(create_app()):
            pass
    finally:
        reset_caches()
