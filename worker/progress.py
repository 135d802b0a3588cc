"""A run's progress on its row (at most a few times a second), a heartbeat, and cancel.

The time left is the run's, not the stage's: measured from how fast the run's progress moves
in the current stage once its warm-up (loading the network) is over, smoothed, and withheld
until it rests on enough of the run to mean something."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from backend.db import session_scope
from backend.runs import transitions
from backend.runs.schemas import EpochRecord
from backend.runs.transitions import Lease
from worker.ml.errors import Cancelled

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0
CANCEL_POLL_S = 0.5


class TimeLeft:
    """The run's remaining seconds from its measured pace.

    Nothing is said before ``warmup_s`` seconds of measurable progress and ``min_progress``
    of the run have passed since the warm-up began; then the pace over that whole window
    gives an estimate, smoothed exponentially so one quick batch does not swing it."""

    def __init__(
        self,
        *,
        warmup_s: float = 4.0,
        min_progress: float = 0.05,
        smoothing: float = 0.3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.warmup_s, self.min_progress, self.smoothing = warmup_s, min_progress, smoothing
        self.clock = clock
        self._seen: float | None = None  # progress when the stage's counting began
        self._start: tuple[float, float] | None = None  # (time, progress) the window opens at
        self._estimate: float | None = None
        self._at: float | None = None

    def new_stage(self) -> None:
        """A stage of another pace begins (fine-tuning after featurizing): measure afresh,
        counting the last estimate down meanwhile."""
        self._seen = self._start = None

    def update(self, progress: float) -> float | None:
        now = self.clock()
        if self._start is None:
            # The first count comes before the network is loaded; the first step past it
            # opens the window, so loading time is not taken for the pace of the work.
            if self._seen is not None and progress > self._seen:
                self._start = (now, progress)
            elif self._seen is None:
                self._seen = progress
            return self.current()
        t0, p0 = self._start
        if now - t0 < self.warmup_s or progress - p0 < self.min_progress:
            return self.current()
        raw = (1.0 - progress) * (now - t0) / (progress - p0)
        previous = self.current()
        self._estimate = raw if previous is None else previous + self.smoothing * (raw - previous)
        self._at = now
        return self._estimate

    def current(self) -> float | None:
        """The last estimate, counted down by the time since it was made."""
        if self._estimate is None or self._at is None:
            return None
        return max(0.0, self._estimate - (self.clock() - self._at))


class RunReporter:
    """The Reporter of one claimed run: throttled progress, a heartbeat thread, the cancel
    flag. Once the lease is lost (the run requeued or failed meanwhile) it asks to stop."""

    def __init__(self, lease: Lease, min_interval_s: float = 0.3) -> None:
        self.lease = lease
        self.min_interval_s = min_interval_s
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False
        self._time_left = TimeLeft()
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

    def stage(
        self,
        name: str,
        progress: float,
        *,
        images_total: int | None = None,
        unit: str = "images",
        detail: str | None = None,
    ) -> None:
        self._time_left.new_stage()
        eta = self._time_left.current()  # the pace is measured on work done, in items()
        with session_scope() as session:
            transitions.enter_stage(
                session,
                self.lease,
                name,
                progress,
                detail=detail,
                unit=unit,
                images_total=images_total,
                eta_s=eta,
            )
        self._last_write = time.monotonic()

    def items(
        self,
        done: int,
        total: int,
        lo: float,
        hi: float,
        *,
        force: bool = False,
        detail: str | None = None,
    ) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < self.min_interval_s and done < total:
            return
        self._last_write = now
        fraction = done / total if total else 1.0
        progress = lo + (hi - lo) * fraction
        with session_scope() as session:
            transitions.advance(
                session,
                self.lease,
                progress,
                images_done=done,
                images_total=total,
                eta_s=self._time_left.update(progress),
                detail=detail,
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
