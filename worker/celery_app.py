"""The Celery application the workers run; configured from autodl's settings."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from backend.config import get_settings
from backend.queue import configure

app = Celery("autodl", include=["worker.tasks"])
configure(app, get_settings())


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    """A forked pool process must not reuse the parent's database connections."""
    from backend.db import get_engine

    get_engine().dispose(close=False)
