"""A run's progress on its row (at most a few times a second), a heartbeat, and cancel."""

from __future__ import annotations

import logging
import threading
import time

from backend.db import session_scope
from backend.runs import transitions
from backend.runs.schemas import EpochRecord
from backend.runs.transitions import Lease
from worker.ml.errors import Cancelled

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0
CANCEL_POLL_S = 0.5


class RunReporter:
    """The Reporter of one claimed run: throttled progress, a heartbeat thread, the cancel
    flag. Once the lease is lost (the run requeued or failed meanwhile) it asks to stop."""

    def __init__(self, lease: Lease, min_interval_s: float = 0.3) -> None:
        self.lease = lease
        self.min_interval_s = min_interval_s
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False
        self._stage_started = time.monotonic()
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> RunReporter:
        self._heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._heartbeat.join(timeout=2)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                with session_scope() as session:
                    transitions.heartbeat(session, self.lease)
            except Exception as exc:  # a busy or restarting database: beat again next time
                log.warning("run %s: heartbeat not written: %s", self.lease.run_id, exc)

    def stage(self, name: str, progress: float, *, images_total: int | None = None) -> None:
        self._stage_started = time.monotonic()
        with session_scope() as session:
            transitions.enter_stage(session, self.lease, name, progress, images_total=images_total)
        self._last_write = time.monotonic()

    def items(self, done: int, total: int, lo: float, hi: float, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < self.min_interval_s and done < total:
            return
        self._last_write = now
        elapsed = now - self._stage_started
        fraction = done / total if total else 1.0
        with session_scope() as session:
            transitions.advance(
                session,
                self.lease,
                lo + (hi - lo) * fraction,
                images_done=done,
                images_total=total,
                eta_s=elapsed / done * (total - done) if done else None,
            )

    def record_history(self, history: list[EpochRecord]) -> None:
        with session_scope() as session:
            transitions.record_history(session, self.lease, history)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_check >= CANCEL_POLL_S:
            self._last_cancel_check = now
            with session_scope() as session:
                self._cancelled = transitions.cancel_requested(session, self.lease)
        return self._cancelled

    def check_cancel(self) -> None:
        if self.should_stop():
            raise Cancelled()
