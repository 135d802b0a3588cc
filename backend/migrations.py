"""Apply Alembic migrations programmatically (at start, and from ``autodl migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from alembic import command
from backend.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def alembic_config(database_url: str | None = None) -> Config:
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "alembic"))
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str | None = None) -> None:
    command.upgrade(alembic_config(database_url), "head")


def prepare(settings: Settings) -> Settings:
    """The data dir's folders and the schema at head: what every command that uses the
    database does first (the app's start, ``serve``, ``migrate``, the admin commands)."""
    settings.ensure_dirs()
    upgrade(settings.resolved_database_url)
    return settings


def prepare_to_serve(settings: Settings) -> Settings:
    """``prepare``, after refusing a guessable secret key on a production database."""
    settings.check_production()
    return prepare(settings)
