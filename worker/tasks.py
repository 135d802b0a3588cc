"""Celery tasks: thin wrappers that take ids and call the pipeline."""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready

from backend.queue import PING_TASK, RECOVER_TASK, TRAIN_TASK
from worker.celery_app import app
from worker.pipeline import execute_run, recover_abandoned_runs, resend_queued_runs

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 30.0


@app.task(name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True)
def train_run(run_id: int) -> str:
    return execute_run(run_id)


@app.task(name=PING_TASK)
def ping() -> str:
    return "pong"


@app.task(name=RECOVER_TASK)
def recover_runs() -> list[int]:
    return recover_abandoned_runs()


@worker_ready.connect
def _start_recovery_sweeps(**_: object) -> None:
    """Requeue runs abandoned by a dead worker at start, then every SWEEP_EVERY_S seconds."""
    stop = threading.Event()

    def sweep() -> None:
        try:
            resent = resend_queued_runs()
            if resent:
                log.info("re-sent the tasks of queued runs: %s", resent)
        except Exception:
            log.exception("could not re-send queued runs")
        while True:
            try:
                recovered = recover_abandoned_runs()
                if recovered:
                    log.warning("requeued runs abandoned by a stopped worker: %s", recovered)
            except Exception:
                log.exception("recovery sweep failed")
            if stop.wait(SWEEP_EVERY_S):
                return

    threading.Thread(target=sweep, name="autodl-recovery", daemon=True).start()
