"""Every write of a run's row: one function per transition of its life.

```
            claim                succeed
  queued ─────────────> running ────────> succeeded
    │  ▲                 │ │ │   fail
    │  └─── requeue ─────┘ │ └──────────> failed
    │    (silent worker)   │   cancelled
    ├──> cancelled         └────────────> cancelled
    ├──> (removed: the broker refused its task; POST /runs answers 503)
    └──> resent (still queued: its task is not in the broker)
```

The API and the worker change a run only through these functions, each a conditional
UPDATE on the state it leaves, so two writers cannot both win. A worker's writes carry its
:class:`Lease` (the run and the attempt it claimed): once the run is requeued, failed or
claimed again, the old worker's writes match no row and it stops. Reads never change
state; what to do with a run whose worker went silent is decided in
:func:`recover_silent_runs`, and which queued runs lack a task in :func:`unsent_runs`, both
called by the one recovery sweep (backend/runs/recovery.py) that every API process and
every worker runs. The caller owns the session
and its transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import CursorResult, Result, delete, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from backend.db import utcnow
from backend.runs.models import Run, RunMode, RunStatus
from backend.runs.schemas import AutoDecision, EpochRecord, RunIn, RunMetrics

MAX_ATTEMPTS = 2  # a run whose worker went silent is tried once more, then failed

WORKER_LOST = (
    "The worker training this model stopped (it was restarted or ran out of memory) and the "
    "retry did not finish either. Start the run again."
)


class LeaseLost(Exception):
    """The run is no longer this worker's: requeued, failed or claimed by another worker."""


@dataclass(frozen=True)
class Lease:
    """A worker's claim on a run: its writes land only while this attempt owns the run."""

    run_id: int
    attempt: int


def _rowcount(result: Result[Any]) -> int:
    return result.rowcount if isinstance(result, CursorResult) else 0


def _held(lease: Lease) -> tuple[ColumnElement[bool], ...]:
    return (
        Run.id == lease.run_id,
        Run.attempts == lease.attempt,
        Run.status == RunStatus.RUNNING,
    )


def _ended(status: RunStatus, error: str | None = None) -> dict[str, Any]:
    return {
        "status": status,
        "stage": status.value,
        "stage_detail": None,
        "error": error,
        "finished_at": utcnow(),
    }


# ---------------------------------------------------------------- the API's transitions


def create(session: Session, project_id: int, body: RunIn) -> Run:
    """A new queued run; the caller sends its task once the row is committed."""
    run = Run(
        project_id=project_id,
        mode=body.mode,
        backbone=body.backbone,
        name=body.name,
        options=body.options.model_dump(mode="json"),
        status=RunStatus.QUEUED,
        stage=RunStatus.QUEUED.value,
    )
    session.add(run)
    session.flush()
    return run


def withdraw_unsent(session: Session, run_id: int) -> None:
    """The broker could not be reached when the run was created: it is removed again, so the
    refused request leaves nothing behind (no worker can have seen its id)."""
    session.execute(delete(Run).where(Run.id == run_id, Run.status == RunStatus.QUEUED))


def cancel(session: Session, run: Run) -> bool:
    """Cancel a queued run at once, or ask its worker to stop; False if it had finished."""
    result = session.execute(
        update(Run)
        .where(Run.id == run.id, Run.status.in_([RunStatus.QUEUED, RunStatus.RUNNING]))
        .values(cancel_requested=True)
    )
    if not _rowcount(result):
        return False
    session.execute(
        update(Run)
        .where(Run.id == run.id, Run.status == RunStatus.QUEUED)
        .values(**_ended(RunStatus.CANCELLED))
    )
    session.refresh(run)
    return True


def rename(session: Session, run: Run, name: str | None) -> None:
    """The owner's name for the run (None: shown by its number only)."""
    session.execute(update(Run).where(Run.id == run.id).values(name=name))
    session.refresh(run)


def deploy(session: Session, run: Run) -> bool:
    """Make a succeeded run the project's deployed model, in place of any other; False (and
    nothing changed) when the run has no trained model."""
    if run.status != RunStatus.SUCCEEDED:
        return False
    session.execute(
        update(Run)
        .where(Run.project_id == run.project_id, Run.id != run.id, Run.deployed_at.is_not(None))
        .values(deployed_at=None)
    )
    result = session.execute(
        update(Run)
        .where(Run.id == run.id, Run.status == RunStatus.SUCCEEDED)
        .values(deployed_at=utcnow())
    )
    session.refresh(run)
    return _rowcount(result) == 1


def undeploy(session: Session, run: Run) -> None:
    """The project has no deployed model any more (if this run was it)."""
    session.execute(update(Run).where(Run.id == run.id).values(deployed_at=None))
    session.refresh(run)


def delete_finished(session: Session, run: Run) -> bool:
    """Remove a finished run's row (predictions, artifacts and heatmaps rows go with it);
    False while it is queued or running. The caller removes its files after the commit."""
    result = session.execute(
        delete(Run)
        .where(Run.id == run.id, Run.status.in_([s for s in RunStatus if s.is_terminal]))
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) == 1:
        session.expunge(run)
        return True
    return False


# ---------------------------------------------------------------- a worker's transitions


def claim(session: Session, run_id: int, *, worker: str, stale_after_s: float) -> Lease | None:
    """Atomically move a queued run (or one whose worker went silent) to running.

    None when the run is not ours to train: finished, cancelled, or owned by a live worker.
    """
    stale_before = utcnow() - timedelta(seconds=stale_after_s)
    result = session.execute(
        update(Run)
        .where(
            Run.id == run_id,
            Run.cancel_requested.is_(False),
            (Run.status == RunStatus.QUEUED)
            | ((Run.status == RunStatus.RUNNING) & (Run.heartbeat_at < stale_before)),
        )
        .values(
            status=RunStatus.RUNNING,
            stage="preparing",
            stage_detail=None,
            progress=0.0,
            started_at=utcnow(),
            heartbeat_at=utcnow(),
            attempts=Run.attempts + 1,
            worker=worker,
            error=None,
        )
    )
    if _rowcount(result) != 1:
        return None
    attempt = session.scalar(select(Run.attempts).where(Run.id == run_id))
    assert attempt is not None
    return Lease(run_id, attempt)


def _write(session: Session, lease: Lease, **values: Any) -> bool:
    result = session.execute(
        update(Run).where(*_held(lease)).values(heartbeat_at=utcnow(), **values)
    )
    return _rowcount(result) == 1


def heartbeat(session: Session, lease: Lease) -> bool:
    """The worker is alive; False once the run is no longer its own."""
    return _write(session, lease)


def enter_stage(
    session: Session,
    lease: Lease,
    stage: str,
    progress: float,
    *,
    detail: str | None = None,
    unit: str = "images",
    images_total: int | None = None,
    eta_s: float | None = None,
) -> bool:
    """A new stage starts (featurizing, training, ...): what it works on and what it counts
    (counts start afresh when ``images_total`` is given; the run's time left carries on)."""
    counts = {} if images_total is None else {"images_done": 0, "images_total": images_total}
    return _write(
        session,
        lease,
        stage=stage,
        stage_detail=detail,
        unit=unit,
        progress=progress,
        eta_s=eta_s,
        **counts,
    )


def advance(
    session: Session,
    lease: Lease,
    progress: float,
    *,
    images_done: int,
    images_total: int,
    eta_s: float | None,
    detail: str | None = None,
) -> bool:
    """Progress within the current stage (``detail`` replaces the stage's, when given)."""
    values: dict[str, Any] = {} if detail is None else {"stage_detail": detail}
    return _write(
        session,
        lease,
        progress=progress,
        images_done=images_done,
        images_total=images_total,
        eta_s=eta_s,
        **values,
    )


def record_history(session: Session, lease: Lease, history: list[EpochRecord]) -> bool:
    """The training curves so far (one record per finished epoch)."""
    return _write(session, lease, history=[record.model_dump() for record in history])


def cancel_requested(session: Session, lease: Lease) -> bool:
    """Whether the worker should stop: cancel was asked, or the run is no longer its own."""
    row = session.execute(select(Run.cancel_requested).where(*_held(lease))).first()
    return row is None or bool(row[0])


def metrics_json(metrics: RunMetrics) -> dict[str, Any]:
    """Metrics as stored: the derived numbers are computed again when read."""
    return metrics.model_dump(mode="json", exclude_computed_fields=True)


def succeed(
    session: Session,
    lease: Lease,
    metrics: RunMetrics,
    *,
    history: list[EpochRecord] | None,
    decision: AutoDecision | None,
) -> None:
    """The verified model is stored: the run has succeeded. Raises LeaseLost if not ours."""
    result = session.execute(
        update(Run)
        .where(*_held(lease))
        .values(
            **_ended(RunStatus.SUCCEEDED),
            progress=1.0,
            eta_s=None,
            metrics=metrics_json(metrics),
            history=None if history is None else [h.model_dump() for h in history],
            decision=None if decision is None else decision.model_dump(mode="json"),
        )
    )
    if _rowcount(result) != 1:
        raise LeaseLost(lease.run_id)


def record_exports(session: Session, run_id: int, metrics: RunMetrics) -> None:
    """A succeeded run's further formats (which are still pending, which failed) and what it
    measured after it succeeded (``metrics.runtimes``)."""
    session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.SUCCEEDED)
        .values(metrics=metrics_json(metrics))
    )


def fail(session: Session, lease: Lease, error: str) -> None:
    """Training stopped with an error a person can act on."""
    session.execute(update(Run).where(*_held(lease)).values(**_ended(RunStatus.FAILED, error)))


def acknowledge_cancel(session: Session, lease: Lease) -> None:
    """The worker stopped because cancel was asked."""
    session.execute(update(Run).where(*_held(lease)).values(**_ended(RunStatus.CANCELLED)))


# ---------------------------------------------------------------- recovery


def recover_silent_runs(session: Session, *, stale_after_s: float) -> list[tuple[int, RunMode]]:
    """Runs whose worker stopped heartbeating: requeue once, then fail with a reason (or
    cancel, if cancel was asked). Returns the requeued runs, whose tasks the caller sends
    again after the commit."""
    stale_before = utcnow() - timedelta(seconds=stale_after_s)
    silent = session.execute(
        select(Run.id, Run.mode, Run.attempts, Run.cancel_requested).where(
            Run.status == RunStatus.RUNNING, Run.heartbeat_at < stale_before
        )
    ).all()
    requeued: list[tuple[int, RunMode]] = []
    for run_id, mode, attempts, cancelled in silent:
        still_silent = (
            Run.id == run_id,
            Run.status == RunStatus.RUNNING,
            Run.heartbeat_at < stale_before,
        )
        if cancelled:
            values = _ended(RunStatus.CANCELLED)
        elif attempts >= MAX_ATTEMPTS:
            values = _ended(RunStatus.FAILED, WORKER_LOST)
        else:
            values = {"status": RunStatus.QUEUED, "stage": RunStatus.QUEUED.value, "error": None}
        result = session.execute(update(Run).where(*still_silent).values(**values))
        if _rowcount(result) and values["status"] == RunStatus.QUEUED:
            requeued.append((run_id, mode))
    return requeued


def unsent_runs(
    session: Session, *, waiting: set[int], quiet_for_s: float
) -> list[tuple[int, RunMode]]:
    """Queued runs with no task waiting in the broker (a restarted Redis without persistence,
    a FLUSHALL, a message reserved by a worker that died), left alone for ``quiet_for_s`` so
    a task that is being sent right now is not sent twice. Their tasks are sent again; a
    duplicate is harmless, since only one worker can claim a run."""
    quiet_before = utcnow() - timedelta(seconds=quiet_for_s)
    rows = session.execute(
        select(Run.id, Run.mode)
        .where(Run.status == RunStatus.QUEUED, Run.updated_at < quiet_before)
        .order_by(Run.id)
    )
    return [(run_id, mode) for run_id, mode in rows if run_id not in waiting]
