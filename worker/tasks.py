"""Celery tasks: thin wrappers that take ids and call the pipeline; the worker's signals."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from celery import Task
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from backend.config import get_settings
from backend.db import session_scope
from backend.health.service import request_check_if_examinable
from backend.logs import configure_logging, current_run_id
from backend.ops import workers
from backend.processes import die_with_parent
from backend.queue import (
    EXPLAIN_TASK,
    HEALTH_TASK,
    PACE_TASK,
    PING_TASK,
    RECOVER_TASK,
    TRAIN_TASK,
    broker_redis,
)
from backend.runs.models import Run
from backend.runs.recovery import RecoverySweep, recover_abandoned_runs
from worker.celery_app import app
from worker.explain import explain_image
from worker.health import examine_project
from worker.pace import measure_backbone_pace
from worker.pipeline import Execution, execute_run

log = logging.getLogger(__name__)


@app.task(name=TRAIN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def train_run(self: Task, run_id: int) -> Execution:
    outcome = execute_run(run_id, worker=self.request.hostname)
    if outcome == "succeeded":
        refresh_health_after_run(run_id)
    return outcome


def refresh_health_after_run(run_id: int) -> None:
    """A run may have split images and cached another backbone's embeddings: re-examine."""
    try:
        with session_scope() as session:
            run = session.get(Run, run_id)
            if run is not None:
                request_check_if_examinable(session, run.project_id)
    except Exception:  # the run stands; the report refreshes at the next upload or request
        log.exception("could not request the health check after run %s", run_id)


@app.task(name=HEALTH_TASK, acks_late=True, reject_on_worker_lost=True)
def examine_project_task(project_id: int, generation: int) -> str:
    return examine_project(project_id, generation)


@app.task(name=EXPLAIN_TASK, acks_late=True, reject_on_worker_lost=True)
def explain_image_task(run_id: int, image_id: int) -> str:
    return explain_image(run_id, image_id)


@app.task(name=PACE_TASK, acks_late=True, reject_on_worker_lost=True)
def measure_pace_task(project_id: int, backbone: str) -> str:
    return measure_backbone_pace(project_id, backbone)


@app.task(name=PING_TASK)
def ping() -> str:
    return "pong"


@app.task(name=RECOVER_TASK)
def recover_runs() -> list[int]:
    return recover_abandoned_runs()


# ---------------------------------------------------------------- the worker's life


@setup_logging.connect
def _logging(**_: object) -> None:
    """autodl's format (time, level, logger, run id; JSON if asked) instead of Celery's."""
    configure_logging(get_settings())


RUN_TASKS = (TRAIN_TASK, EXPLAIN_TASK)  # tasks whose first argument is a run id
_run_tokens: dict[str, Any] = {}


@task_prerun.connect
def _run_id_on_task_logs(task_id: str = "", task: Any = None, args: Any = (), **_: object) -> None:
    """Celery's own lines about a run's task (received, succeeded) carry its run id too."""
    if getattr(task, "name", None) in RUN_TASKS and args and isinstance(args[0], int):
        _run_tokens[task_id] = current_run_id.set(args[0])


@task_postrun.connect
def _run_id_off(task_id: str = "", **_: object) -> None:
    token = _run_tokens.pop(task_id, None)
    if token is not None:
        current_run_id.reset(token)


@worker_process_init.connect
def _pool_process_dies_with_worker(**_: object) -> None:
    """A pool process killed with its worker (kill -9) must not train on as an orphan,
    heartbeating a run that the recovery sweep should hand to another worker."""
    die_with_parent(signal.SIGKILL)


class Heartbeat:
    """The worker's announcements in Redis (backend/ops/workers.py), from its main process,
    which never trains: they keep coming while every pool process is busy."""

    def __init__(self, name: str, queues: list[str]) -> None:
        self.name, self.queues = name, queues
        self.interval_s = get_settings().worker_heartbeat_interval_s
        self.started_at = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="autodl-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            workers.withdraw(broker_redis(), self.name)
        except Exception as exc:
            log.warning("could not withdraw the worker's heartbeat: %s", exc)

    def _loop(self) -> None:
        while True:
            try:
                workers.announce(
                    broker_redis(),
                    self.name,
                    queues=self.queues,
                    interval_s=self.interval_s,
                    started_at=self.started_at,
                )
            except Exception as exc:  # the broker is down: try again next interval
                log.warning("could not send the worker's heartbeat: %s", exc)
            if self._stop.wait(self.interval_s):
                return


_running: list[Any] = []


@worker_ready.connect
def _start(sender: Any = None, **_: object) -> None:
    """Heartbeats, and the recovery sweep (backend/runs/recovery.py), in the main process."""
    name = str(getattr(sender, "hostname", None) or f"worker-{time.time_ns()}")
    queues = sorted(q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", []))
    _running.append(Heartbeat(name, queues).start())
    _running.append(RecoverySweep(get_settings().recovery_sweep_s).start())


@worker_shutdown.connect
def _stop(**_: object) -> None:
    while _running:
        _running.pop().stop()
