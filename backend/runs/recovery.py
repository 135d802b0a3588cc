"""The recovery sweep: one loop, run by every API process and every worker, that applies
the rules of backend/runs/transitions.py to runs nobody is looking after.

- a running run whose worker stopped heartbeating is requeued once, then failed
  (:func:`transitions.recover_silent_runs`), and a requeued run's task is sent again;
- a queued run with no task waiting in the broker (Redis restarted without persistence,
  FLUSHALL, a worker killed holding the message) gets its task sent again
  (:func:`transitions.unsent_runs`).

Whoever notices first acts; every write is a conditional UPDATE, so two sweepers cannot
both requeue one run, and a duplicate task is skipped by the worker that claims second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from backend.config import Settings, get_settings
from backend.db import session_scope
from backend.queue import enqueue_run, waiting_run_ids
from backend.runs import transitions

log = logging.getLogger(__name__)

# A queued run younger than this (or changed this recently) may have its task in flight.
UNSENT_GRACE_S = 10.0


def recover_abandoned_runs(settings: Settings | None = None) -> list[int]:
    """Requeue (or fail) runs whose worker went silent, and send the requeued ones again."""
    settings = settings or get_settings()
    with session_scope() as session:
        requeued = transitions.recover_silent_runs(
            session, stale_after_s=settings.worker_heartbeat_timeout_s
        )
    for run_id, mode in requeued:
        enqueue_run(run_id, mode)
    return [run_id for run_id, _ in requeued]


def resend_unsent_runs(quiet_for_s: float = UNSENT_GRACE_S) -> list[int]:
    """Send again the tasks of queued runs that have none waiting in the broker."""
    waiting = waiting_run_ids()
    with session_scope() as session:
        unsent = transitions.unsent_runs(session, waiting=waiting, quiet_for_s=quiet_for_s)
    for run_id, mode in unsent:
        enqueue_run(run_id, mode)
    return [run_id for run_id, _ in unsent]


def sweep_once(settings: Settings | None = None, quiet_for_s: float = UNSENT_GRACE_S) -> None:
    _logged(lambda: recover_abandoned_runs(settings), "requeued runs whose worker went silent")
    _logged(lambda: resend_unsent_runs(quiet_for_s), "re-sent queued runs missing from the broker")


def _logged(action: Callable[[], list[int]], what: str) -> None:
    """Run one step; a failure (database or broker down) is logged, never raised."""
    try:
        run_ids = action()
    except Exception as exc:
        log.warning("recovery sweep: %s failed: %s", what, exc)
        return
    if run_ids:
        log.warning("recovery sweep: %s: %s", what, run_ids)


class RecoverySweep:
    """A daemon thread that sweeps at once, then every ``interval_s`` until stopped."""

    def __init__(self, interval_s: float, settings: Settings | None = None) -> None:
        self.interval_s = interval_s
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="autodl-recovery", daemon=True)

    def start(self) -> RecoverySweep:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            sweep_once(self.settings)
            if self._stop.wait(self.interval_s):
                return
