"""Every log line has its time, level, logger and run id; JSON when asked."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest

from backend.config import Settings
from backend.logs import configure_logging, run_context


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_text_lines_carry_time_level_logger_and_run(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_json=False))
    with run_context(42):
        logging.getLogger("worker.pipeline").info("training")
    logging.getLogger("backend.app").warning("no run here")
    lines = capsys.readouterr().err.strip().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.fullmatch(stamp + r" INFO worker\.pipeline run=42 training", lines[-2])
    assert re.fullmatch(stamp + r" WARNING backend\.app run=- no run here", lines[-1])


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_json=True))
    with run_context(7):
        logging.getLogger("celery.worker").error("lost")
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["run_id"] == 7
    assert record["level"] == "ERROR" and record["name"] == "celery.worker"
    assert record["message"] == "lost" and record["time"].endswith("Z")


def test_api_request_logs_carry_the_run_id_of_the_path(
    client, user, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    configure_logging(Settings(log_json=False))
    logging.getLogger("uvicorn.access").setLevel(logging.INFO)

    from backend.runs import service

    original = service.get_run

    def logged(*args, **kwargs):  # type: ignore[no-untyped-def]
        logging.getLogger("backend.runs").info("looking the run up")
        return original(*args, **kwargs)

    service.get_run = logged
    try:
        assert client.get("/api/runs/5", headers=user.headers).status_code == 404
    finally:
        service.get_run = original
    assert "run=5 looking the run up" in capsys.readouterr().err
