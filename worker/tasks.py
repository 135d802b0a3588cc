"""Celery tasks: thin wrappers that take ids and call the pipeline."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from celery.signals import worker_ready

from backend.db import session_scope
from backend.health.service import request_check_if_examinable
from backend.queue import EXPLAIN_TASK, HEALTH_TASK, PING_TASK, RECOVER_TASK, TRAIN_TASK
from backend.runs.models import Run
from worker.celery_app import app
from worker.explain import explain_image
from worker.health import examine_project
from worker.pipeline import Execution, execute_run, recover_abandoned_runs, resend_queued_runs

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 30.0


@app.task(name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True)
def train_run(run_id: int) -> Execution:
    outcome = execute_run(run_id)
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


@app.task(name=PING_TASK)
def ping() -> str:
    return "pong"


@app.task(name=RECOVER_TASK)
def recover_runs() -> list[int]:
    return recover_abandoned_runs()


def _logged(action: Callable[[], list[int]], what: str) -> None:
    """Run one sweep step; a failure is logged, never raised into the sweep's thread."""
    try:
        run_ids = action()
    except Exception:
        log.exception("%s failed", what)
        return
    if run_ids:
        log.warning("%s: %s", what, run_ids)


@worker_ready.connect
def _start_recovery_sweeps(**_: object) -> None:
    """Re-send queued runs at start, then requeue (or fail) runs of dead workers every
    SWEEP_EVERY_S seconds."""
    stop = threading.Event()

    def sweep() -> None:
        _logged(resend_queued_runs, "re-sent the tasks of queued runs")
        while True:
            _logged(recover_abandoned_runs, "requeued runs abandoned by a stopped worker")
            if stop.wait(SWEEP_EVERY_S):
                return

    threading.Thread(target=sweep, name="autodl-recovery", daemon=True).start()
