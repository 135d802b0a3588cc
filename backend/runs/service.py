"""Runs: create and enqueue, read state, cancel, predictions, artifacts, prediction serving."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.auth.models import User
from backend.config import Settings
from backend.db import after_commit, session_scope, utcnow
from backend.errors import Conflict, NotFound
from backend.projects.models import Project
from backend.queue import enqueue_run
from backend.runs.models import Artifact, Prediction, Run
from backend.runs.schemas import (
    ArtifactOut,
    PredictionOut,
    PredictionsOut,
    RunIn,
    RunOut,
)

log = logging.getLogger(__name__)


class RunNotFound(NotFound):
    detail = "Run not found."


class ArtifactNotFound(NotFound):
    detail = "This run has no model file in that format."


class RunAlreadyFinished(Conflict):
    detail = "This run has already finished."


class RunNotSucceeded(Conflict):
    detail = "This run has no trained model yet: only a run that succeeded can predict."


def create_run(session: Session, project: Project, body: RunIn) -> Run:
    """Store a queued run; its task is sent only once the row is committed."""
    run = Run(
        project_id=project.id,
        mode=body.mode,
        backbone=body.backbone,
        options=body.options.model_dump(),
        status="queued",
        stage="queued",
    )
    session.add(run)
    session.flush()
    run_id, mode = run.id, run.mode
    after_commit(session, lambda: enqueue_or_fail(run_id, mode))
    return run


def enqueue_or_fail(run_id: int, mode: str) -> None:
    """Send the run's task; if the broker is unreachable, fail the run instead of losing it."""
    try:
        enqueue_run(run_id, mode)
    except Exception as exc:
        log.warning("could not enqueue run %s: %s", run_id, exc)
        with session_scope() as session:
            run = session.get(Run, run_id)
            if run is not None and run.status == "queued":
                run.status = run.stage = "failed"
                run.finished_at = utcnow()
                run.error = (
                    "The task queue (Redis) could not be reached, so no worker received this "
                    "run. Check that Redis and a worker are running, then start the run again."
                )


def list_runs(session: Session, project: Project) -> list[Run]:
    return list(
        session.scalars(
            select(Run).where(Run.project_id == project.id).order_by(Run.id.desc())
        ).all()
    )


def get_run(session: Session, user: User, run_id: int) -> Run:
    run = session.scalar(
        select(Run).join(Project).where(Run.id == run_id, Project.owner_id == user.id)
    )
    if run is None:
        raise RunNotFound()
    return run


def fail_if_worker_lost(session: Session, run: Run, settings: Settings) -> None:
    """A running run whose worker stopped heartbeating is failed, never left 'running'."""
    if run.status != "running" or run.heartbeat_at is None:
        return
    if utcnow() - run.heartbeat_at > timedelta(seconds=settings.worker_heartbeat_timeout_s):
        run.status = "failed"
        run.stage = "failed"
        run.error = (
            "The worker training this model stopped responding (it may have been restarted "
            "or run out of memory). Start the run again."
        )
        run.finished_at = utcnow()
        session.flush()


def cancel_run(session: Session, run: Run) -> Run:
    if run.is_finished:
        raise RunAlreadyFinished()
    if run.status == "queued":
        run.status = "cancelled"
        run.stage = "cancelled"
        run.finished_at = utcnow()
    run.cancel_requested = True
    session.flush()
    return run


def artifact_url(run_id: int, fmt: str) -> str:
    return f"/api/runs/{run_id}/artifacts/{fmt}"


def artifacts_out(run: Run) -> list[ArtifactOut]:
    return [
        ArtifactOut(
            format=a.format,
            filename=a.filename,
            size_bytes=a.size_bytes,
            sha256=a.sha256,
            created_at=a.created_at,
            url=artifact_url(run.id, a.format),
        )
        for a in run.artifacts
        if Path(a.path).is_file()
    ]


def run_out(run: Run) -> RunOut:
    duration = None
    if run.started_at is not None:
        duration = ((run.finished_at or utcnow()) - run.started_at).total_seconds()
    return RunOut(
        id=run.id,
        project_id=run.project_id,
        mode=run.mode,
        backbone=run.backbone,
        options=run.options or {},
        status=run.status,
        stage=run.stage,
        progress=run.progress,
        images_done=run.images_done,
        images_total=run.images_total,
        eta_s=run.eta_s,
        metrics=run.metrics,
        history=run.history,
        decision=run.decision,
        error=run.error,
        cancel_requested=run.cancel_requested,
        created_at=run.created_at,
        updated_at=run.updated_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration_s=duration,
        artifacts=artifacts_out(run),
    )


def predictions(session: Session, run: Run) -> PredictionsOut:
    rows = session.scalars(
        select(Prediction).where(Prediction.run_id == run.id).order_by(Prediction.id)
    ).all()
    labels: list[str] = list((run.metrics or {}).get("confusion_matrix", {}).get("labels", []))
    return PredictionsOut(
        labels=labels,
        items=[
            PredictionOut(
                image_id=p.image_id,
                filename=p.filename,
                split=p.split,
                true_label=p.true_label,
                predicted_label=p.predicted_label,
                confidence=p.confidence,
                probabilities=p.probabilities,
                correct=p.true_label == p.predicted_label,
            )
            for p in rows
        ],
    )


def get_artifact(run: Run, fmt: str) -> Artifact:
    for artifact in run.artifacts:
        if artifact.format == fmt and Path(artifact.path).is_file():
            return artifact
    raise ArtifactNotFound(
        f"This run has no '{fmt}' model file. Available: "
        + (", ".join(a.format for a in run.artifacts) or "none yet")
        + "."
    )


def classifier_path(run: Run) -> Path:
    if run.status != "succeeded":
        raise RunNotSucceeded()
    return Path(get_artifact(run, "onnx").path)


def event_payload(run: Run) -> dict[str, Any]:
    return run_out(run).model_dump(mode="json")
