"""Writes a run's progress to its row (at most a few times a second) and polls for cancel."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import update

from backend.db import session_scope, utcnow
from backend.runs.models import Run
from worker.ml.errors import Cancelled

HEARTBEAT_S = 5.0


class RunReporter:
    """Throttled progress updates, a heartbeat thread and the cancel flag of one run."""

    def __init__(self, run_id: int, min_interval_s: float = 0.3) -> None:
        self.run_id = run_id
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
            self._write(heartbeat_at=utcnow())

    def _write(self, **values: Any) -> None:
        with session_scope() as session:
            session.execute(update(Run).where(Run.id == self.run_id).values(**values))

    def stage(self, name: str, progress: float, **extra: Any) -> None:
        self._stage_started = time.monotonic()
        self._write(stage=name, progress=progress, eta_s=None, heartbeat_at=utcnow(), **extra)
        self._last_write = time.monotonic()

    def items(self, done: int, total: int, lo: float, hi: float, force: bool = False) -> None:
        """Progress through ``total`` items, mapped onto [lo, hi] of the whole run."""
        now = time.monotonic()
        if not force and now - self._last_write < self.min_interval_s and done < total:
            return
        self._last_write = now
        elapsed = now - self._stage_started
        eta = elapsed / done * (total - done) if done else None
        fraction = done / total if total else 1.0
        self._write(
            progress=lo + (hi - lo) * fraction,
            images_done=done,
            images_total=total,
            eta_s=eta,
            heartbeat_at=utcnow(),
        )

    def record(self, **values: Any) -> None:
        self._write(heartbeat_at=utcnow(), **values)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_check >= 0.5:
            self._last_cancel_check = now
            with session_scope() as session:
                run = session.get(Run, self.run_id)
                self._cancelled = run is None or run.cancel_requested
        return self._cancelled

    def check_cancel(self) -> None:
        if self.should_stop():
            raise Cancelled()
