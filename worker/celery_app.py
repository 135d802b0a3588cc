"""The Celery application the workers run; configured from autodl's settings."""

from __future__ import annotations

import importlib
import logging
import time

from celery import Celery
from celery.signals import worker_init, worker_process_init

from backend.config import get_settings
from backend.queue import configure

log = logging.getLogger(__name__)

app = Celery("autodl", include=["worker.tasks"])
configure(app, get_settings())

# What every run imports. Imported once in the worker's main process, before the pool
# forks, so a pool process (replaced after a task that leaves it above
# worker_max_memory_mb) starts with them instead of paying ~3 s of CPU to import them on
# its next run; nothing runs in them before the fork (no thread pools start).
PRELOAD = (
    "torch",
    "timm",
    "onnx",
    "onnxruntime",
    "sklearn.linear_model",
    "worker.ml.features",
    "worker.ml.heads",
    "worker.ml.export",
)


@worker_init.connect
def _preload(**_: object) -> None:
    started = time.perf_counter()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional runtime missing: the run says so when it needs it
            log.warning("could not preload %s", name, exc_info=True)
    log.info("preloaded %d modules in %.1f s", len(PRELOAD), time.perf_counter() - started)


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    """A forked pool process must not reuse the parent's database connections."""
    from backend.db import get_engine

    get_engine().dispose(close=False)
