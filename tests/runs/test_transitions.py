"""The run's life cycle on its row: claims, leases, recovery of silent runs, and reads that
never change state. The rows are real (SQLite from the migrations); no worker runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from backend.db import session_scope, utcnow
from backend.runs import transitions
from backend.runs.models import Run, RunStatus
from backend.runs.schemas import EpochRecord, RunMetrics
from backend.runs.transitions import Lease, LeaseLost
from tests.conftest import ApiUser
from tests.runs.conftest import start_run

STALE_S = 60.0


def claim(run_id: int, worker: str = "w1") -> Lease | None:
    with session_scope() as session:
        return transitions.claim(session, run_id, worker=worker, stale_after_s=STALE_S)


def go_silent(run_id: int) -> None:
    """As if the worker had died an hour ago."""
    with session_scope() as session:
        session.execute(
            update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow() - timedelta(hours=1))
        )


def recover() -> list[int]:
    with session_scope() as session:
        return [i for i, _ in transitions.recover_silent_runs(session, stale_after_s=STALE_S)]


def row(run_id: int) -> Run:
    with session_scope() as session:
        run = session.get(Run, run_id)
        assert run is not None
        session.expunge(run)
        return run


@pytest.fixture
def run_id(client: TestClient, user: ApiUser, project: dict, redis_url: str) -> int:
    return int(start_run(client, user, project)["id"])


def test_only_one_worker_claims_a_run(run_id: int) -> None:
    lease = claim(run_id, "w1")
    assert lease == Lease(run_id, attempt=1)
    assert claim(run_id, "w2") is None
    assert (row(run_id).status, row(run_id).worker) == (RunStatus.RUNNING, "w1")


def test_reading_a_silent_run_changes_nothing(
    client: TestClient, user: ApiUser, run_id: int
) -> None:
    claim(run_id)
    go_silent(run_id)
    assert client.get(f"/api/runs/{run_id}", headers=user.headers).json()["status"] == "running"
    with client.stream("GET", f"/api/runs/{run_id}/events", headers=user.headers) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"
        assert next(lines) == ""
        assert next(lines) == "event: run"
        assert '"status":"running"' in next(lines)
    assert row(run_id).status == RunStatus.RUNNING


def test_a_silent_run_is_requeued_once_then_failed(run_id: int) -> None:
    first = claim(run_id)
    go_silent(run_id)
    assert recover() == [run_id]
    assert row(run_id).status == RunStatus.QUEUED

    second = claim(run_id)
    assert second == Lease(run_id, attempt=2)
    assert first is not None and second is not None
    # The first worker, should it wake up, owns nothing any more.
    with session_scope() as session:
        assert not transitions.enter_stage(session, first, "training", 0.5)
        assert transitions.cancel_requested(session, first)
        assert transitions.enter_stage(session, second, "training", 0.5)
        assert not transitions.cancel_requested(session, second)
    with pytest.raises(LeaseLost), session_scope() as session:
        transitions.succeed(session, first, _metrics(), history=None, decision=None)

    go_silent(run_id)
    assert recover() == []
    failed = row(run_id)
    assert failed.status == RunStatus.FAILED and failed.error == transitions.WORKER_LOST
    assert failed.finished_at is not None


def test_a_live_run_is_not_recovered(run_id: int) -> None:
    lease = claim(run_id)
    assert lease is not None
    assert recover() == []
    with session_scope() as session:
        assert transitions.heartbeat(session, lease)
        transitions.record_history(
            session,
            lease,
            [EpochRecord(epoch=1, train_loss=1, val_loss=1, val_accuracy=0.5, lr=1e-4, seconds=2)],
        )
    assert row(run_id).history == [
        {"epoch": 1, "train_loss": 1, "val_loss": 1, "val_accuracy": 0.5, "lr": 1e-4, "seconds": 2}
    ]


def test_cancel_stops_a_queued_run_at_once_and_asks_a_running_one(
    client: TestClient, user: ApiUser, project: dict, run_id: int
) -> None:
    with session_scope() as session:
        queued = session.get(Run, run_id)
        assert queued is not None
        assert transitions.cancel(session, queued)
        assert queued.status == RunStatus.CANCELLED
        assert not transitions.cancel(session, queued)  # finished: nothing to cancel

    other = int(start_run(client, user, project)["id"])
    lease = claim(other)
    assert lease is not None
    with session_scope() as session:
        running = session.get(Run, other)
        assert running is not None
        assert transitions.cancel(session, running)
        assert running.status == RunStatus.RUNNING and running.cancel_requested
        assert transitions.cancel_requested(session, lease)
    # A silent run whose cancel was asked ends cancelled, not requeued.
    go_silent(other)
    assert recover() == []
    assert row(other).status == RunStatus.CANCELLED


def _metrics() -> RunMetrics:
    return RunMetrics.model_validate(
        dict(
            accuracy=1.0,
            balanced_accuracy=1.0,
            macro_f1=1.0,
            log_loss=0.0,
            per_class={},
            confusion_matrix={"labels": [], "matrix": []},
            n_train=2,
            n_val=0,
            n_test=0,
            featurized={"computed": 2, "cached": 0, "skipped_unreadable": 0},
            timings={},
            weights={"source": "scratch", "digest": "x"},
        )
    )
