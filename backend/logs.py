"""Logging for every autodl process: one configuration, the run id on every line.

Each line carries its time (UTC, ISO 8601), level, logger and the run it is about (``-``
when none); ``AUTODL_LOG_JSON=true`` writes one JSON object per line instead, through
python-json-logger. The API sets the run id from the request path, the worker around a run.
"""

from __future__ import annotations

import logging
import logging.config
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from backend.config import Settings

current_run_id: ContextVar[int | None] = ContextVar("autodl_run_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s run=%(run_id)s %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(run_id)s %(process)d %(message)s"
QUIET_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx")
_RUN_PATH = re.compile(r"^/api/runs/(\d+)(?:/|$)")


class RunIdFilter(logging.Filter):
    """Stamp each record with the run id of the context that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            run_id = current_run_id.get()
            record.run_id = "-" if run_id is None else run_id
        return True


def utc_time(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC with milliseconds: 2026-12-01T11:29:05.123Z."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_time(record)


def _json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    class UTCJsonFormatter(JsonFormatter):
        def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
            return utc_time(record)

    return UTCJsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level"})


def logging_config(settings: Settings) -> dict[str, Any]:
    """A dictConfig for the root logger; uvicorn's and Celery's loggers propagate to it."""
    formatter: dict[str, Any] = (
        {"()": _json_formatter} if settings.log_json else {"()": UTCFormatter, "fmt": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"run_id": {"()": RunIdFilter}},
        "formatters": {"autodl": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "autodl",
                "filters": ["run_id"],
            }
        },
        "root": {"level": settings.log_level.upper(), "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own configuration would add handlers that bypass ours.
            **{
                name: {"handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "kombu")
            },
            # torch.onnx's optimizer logs every initializer it merges (hundreds of lines a run).
            **{name: {"level": "WARNING"} for name in QUIET_LOGGERS},
        },
    }


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings))
    logging.captureWarnings(True)  # warnings are log lines too, with time and run id


def run_id_of_path(path: str) -> int | None:
    match = _RUN_PATH.match(path)
    return int(match.group(1)) if match else None


@contextmanager
def run_context(run_id: int | None) -> Iterator[None]:
    """Log lines inside carry ``run_id``."""
    token = current_run_id.set(run_id)
    try:
        yield
    finally:
        current_run_id.reset(token)
