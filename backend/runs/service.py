"""Runs: create and enqueue, read state, cancel, predictions, artifacts, prediction serving."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.auth.models import User
from backend.config import get_settings
from backend.db import after_commit, session_scope, utcnow
from backend.errors import Conflict, NotFound, ServiceUnavailable
from backend.projects.models import Project
from backend.queue import enqueue_run
from backend.runs import transitions
from backend.runs.models import Artifact, Prediction, Run, RunMode, RunStatus
from backend.runs.schemas import (
    ArtifactOut,
    AutoDecision,
    EpochRecord,
    PredictionOut,
    PredictionsOut,
    RunIn,
    RunMetrics,
    RunOptions,
    RunOut,
    Snippets,
    UsageInput,
    UsageOut,
)
from backend.runs.usage import ModelFacts, csharp_onnx, curl_hosted, javascript_onnx, python_onnx
from backend.storage import artifact_key, get_storage, recorded_exists, recorded_file

log = logging.getLogger(__name__)


class RunNotFound(NotFound):
    detail = "Run not found."


class ArtifactNotFound(NotFound):
    detail = "This run has no model file in that format."


class RunAlreadyFinished(Conflict):
    detail = "This run has already finished."


class RunNotSucceeded(Conflict):
    detail = "This run has no trained model yet: only a run that succeeded can predict."


class RunStillActive(Conflict):
    detail = "This run is still queued or training: cancel it first, then delete it."


class CannotDeploy(Conflict):
    detail = "Only a run that succeeded has a model to deploy."


class NothingDeployed(Conflict):
    detail = (
        "This project has no deployed model yet: open a run that succeeded and choose "
        "“Deploy this model”."
    )


class BrokerUnavailable(ServiceUnavailable):
    detail = "The task queue (Redis) cannot be reached, so the run was not started."


def create_run(session: Session, project: Project, body: RunIn) -> Run:
    """Store a queued run; its task is sent once the row is committed (a worker must find
    it), before the answer goes out. If the broker cannot be reached the row is removed
    again and the request fails with a 503: a refused request stores nothing."""
    run = transitions.create(session, project.id, body)
    run_id, mode = run.id, run.mode
    after_commit(session, lambda: enqueue_or_withdraw(run_id, mode))
    return run


def enqueue_or_withdraw(run_id: int, mode: RunMode) -> None:
    try:
        enqueue_run(run_id, mode)
    except Exception as exc:
        log.warning("could not enqueue run %s: %s", run_id, exc)
        with session_scope() as session:
            transitions.withdraw_unsent(session, run_id)
        raise BrokerUnavailable(
            "The task queue (Redis) cannot be reached, so the run was not started and "
            f"nothing was stored ({type(exc).__name__}: {exc}). Check that Redis is running, "
            "then start the run again."
        ) from exc


def rerun(session: Session, run: Run) -> Run:
    """A new queued run with the same mode, backbone and options (and name) as ``run``."""
    body = RunIn(
        mode=run.mode, backbone=run.backbone, options=RunOptions.model_validate(run.options)
    )
    again = create_run(session, run.project, body)
    if run.name:
        transitions.rename(session, again, run.name)
    return again


def rename_run(session: Session, run: Run, name: str | None) -> Run:
    transitions.rename(session, run, name)
    return run


def delete_run(session: Session, run: Run) -> None:
    """Delete a finished run, its predictions, model files and heatmaps."""
    folder, run_id = get_settings().run_dir(run.id), run.id
    if not transitions.delete_finished(session, run):
        raise RunStillActive()
    after_commit(session, lambda: shutil.rmtree(folder, ignore_errors=True))
    after_commit(session, lambda: get_storage().delete_prefix(artifact_key(run_id, "")))


def deploy_run(session: Session, run: Run) -> Run:
    if not transitions.deploy(session, run):
        raise CannotDeploy()
    return run


def undeploy_run(session: Session, run: Run) -> Run:
    transitions.undeploy(session, run)
    return run


def deployed_run(session: Session, project: Project) -> Run | None:
    """The run whose model answers the project's prediction endpoint, if any."""
    return session.scalar(
        select(Run).where(Run.project_id == project.id, Run.deployed_at.is_not(None))
    )


def deployed_classifier_path(session: Session, project: Project) -> Path:
    run = deployed_run(session, project)
    if run is None:
        raise NothingDeployed()
    return classifier_path(run)


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


def cancel_run(session: Session, run: Run) -> Run:
    if not transitions.cancel(session, run):
        raise RunAlreadyFinished()
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
        if recorded_exists(a.path)
    ]


def renamed_labels(run: Run) -> dict[str, str]:
    """{name a class had when the run trained: its label's name now}, for labels renamed
    since (a label deleted since is not listed: its class keeps the trained name)."""
    trained = (run.metrics or {}).get("label_ids") or {}
    if not trained:
        return {}
    now = {label.id: label.name for label in run.project.labels}
    return {
        old: now[label_id]
        for old, label_id in trained.items()
        if label_id in now and now[label_id] != old
    }


def run_out(run: Run) -> RunOut:
    duration = None
    if run.started_at is not None:
        duration = ((run.finished_at or utcnow()) - run.started_at).total_seconds()
    return RunOut(
        id=run.id,
        project_id=run.project_id,
        name=run.name,
        deployed=run.deployed_at is not None,
        deployed_at=run.deployed_at,
        mode=run.mode,
        backbone=run.backbone,
        options=RunOptions.model_validate(run.options),
        status=run.status,
        stage=run.stage,
        stage_detail=run.stage_detail,
        unit=run.unit,
        progress=run.progress,
        images_done=run.images_done,
        images_total=run.images_total,
        eta_s=run.eta_s,
        metrics=None if run.metrics is None else RunMetrics.model_validate(run.metrics),
        history=None if run.history is None else [EpochRecord(**h) for h in run.history],
        decision=None if run.decision is None else AutoDecision.model_validate(run.decision),
        error=run.error,
        cancel_requested=run.cancel_requested,
        created_at=run.created_at,
        updated_at=run.updated_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration_s=duration,
        artifacts=artifacts_out(run),
        renamed_labels=renamed_labels(run),
    )


def predictions(session: Session, run: Run) -> PredictionsOut:
    rows = session.scalars(
        select(Prediction).where(Prediction.run_id == run.id).order_by(Prediction.id)
    ).all()
    labels = (
        []
        if run.metrics is None
        else RunMetrics.model_validate(run.metrics).confusion_matrix.labels
    )
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
        if artifact.format == fmt and recorded_exists(artifact.path):
            return artifact
    raise ArtifactNotFound(
        f"This run has no '{fmt}' model file. Available: "
        + (", ".join(a.format for a in run.artifacts) or "none yet")
        + "."
    )


def classifier_path(run: Run) -> Path:
    if run.status != RunStatus.SUCCEEDED:
        raise RunNotSucceeded()
    return recorded_file(get_artifact(run, "onnx").path)


MODEL_CARD = "MODEL_CARD.md"


def _model_card_file(run: Run) -> Path | None:
    """The run's model card as a local file (fetched from object storage if need be), or
    None before the worker stored it (with the bundle, after the run succeeded)."""
    if run.status != RunStatus.SUCCEEDED:
        return None
    path = get_storage().local_path(artifact_key(run.id, MODEL_CARD))
    return path if path.is_file() else None


def model_card_path(run: Run) -> Path:
    path = _model_card_file(run)
    if path is None:
        raise ArtifactNotFound(
            "This run has no model card yet: it is written once the run succeeds."
        )
    return path


def usage(run: Run, base_url: str) -> UsageOut:
    """The model's input and code to run it, for the run page's deploy help."""
    from backend.runs.predict import classifier_for

    onnx = get_artifact(run, "onnx") if run.status == RunStatus.SUCCEEDED else None
    if onnx is None:
        raise RunNotSucceeded()
    classifier = classifier_for(recorded_file(onnx.path))
    facts = ModelFacts(
        labels=classifier.labels, inputs=classifier.inputs, onnx_filename=onnx.filename
    )
    base = base_url.rstrip("/")
    run_url = f"{base}/api/runs/{run.id}/predict"
    project_url = f"{base}/api/projects/{run.project_id}/predict"
    pp = classifier.preprocess
    # Code for every input of the model: an ensemble's snippets feed each backbone its own
    # way (tests/worker/test_ensemble.py runs the Python one against the file).
    snippets = Snippets(
        python=python_onnx(facts),
        javascript=javascript_onnx(facts),
        csharp=csharp_onnx(facts),
        curl=curl_hosted(run_url, project_url),
    )
    return UsageOut(
        labels=classifier.labels,
        input_name=classifier.input_name,
        input_size=pp.input_size,
        resize_size=pp.resize_size,
        interpolation=pp.interpolation,
        mean=pp.mean,
        std=pp.std,
        predict_url=run_url,
        project_predict_url=project_url,
        model_card_url=(
            f"/api/runs/{run.id}/model-card" if _model_card_file(run) is not None else None
        ),
        snippets=snippets,
        inputs=[
            UsageInput(
                name=name,
                input_size=p.input_size,
                resize_size=p.resize_size,
                interpolation=p.interpolation,
                mean=p.mean,
                std=p.std,
            )
            for name, p in classifier.inputs
        ],
    )


def event_payload(run: Run) -> dict[str, Any]:
    return run_out(run).model_dump(mode="json")
