"""Ask for a heatmap (once per run and image), read its state, serve the PNG."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db import after_commit, session_scope
from backend.errors import Conflict, NotFound
from backend.explanations.models import Explanation
from backend.explanations.schemas import ExplanationOut
from backend.images.models import Image
from backend.queue import enqueue_explanation
from backend.runs.models import Run, RunStatus
from backend.storage import recorded_file

log = logging.getLogger(__name__)


class ExplanationNotFound(NotFound):
    detail = "No heatmap was asked for this image under this run."


class ImageNotInRun(NotFound):
    detail = "Image not found in this run's project."


class ModelNotReady(Conflict):
    detail = (
        "The heatmap needs the run's TorchScript model, which is not ready (the run has not "
        "succeeded, or its exports are still being prepared). Try again in a few seconds."
    )


def explanation_out(row: Explanation) -> ExplanationOut:
    return ExplanationOut(
        image_id=row.image_id,
        status=row.status,  # type: ignore[arg-type]
        label=row.label,
        error=row.error,
        url=f"/api/runs/{row.run_id}/explanations/{row.image_id}/heatmap"
        if row.status == "ready"
        else None,
    )


def find_explanation(session: Session, run_id: int, image_id: int) -> Explanation | None:
    return session.scalar(
        select(Explanation).where(Explanation.run_id == run_id, Explanation.image_id == image_id)
    )


def request_explanation(session: Session, run: Run, image_id: int) -> Explanation:
    """The cached heatmap, or a new computation sent to a worker once committed."""
    image = session.get(Image, image_id)
    if image is None or image.project_id != run.project_id:
        raise ImageNotInRun()
    if run.status != RunStatus.SUCCEEDED or not any(
        a.format == "torchscript" for a in run.artifacts
    ):
        raise ModelNotReady()
    row = find_explanation(session, run.id, image_id)
    if row is not None and row.status != "failed":
        return row
    if row is None:
        row = Explanation(run_id=run.id, image_id=image_id)
        session.add(row)
    row.status, row.error, row.path, row.label = "computing", None, None, None
    session.flush()
    run_id = run.id
    after_commit(session, lambda: enqueue_or_fail(run_id, image_id))
    return row


def enqueue_or_fail(run_id: int, image_id: int) -> None:
    try:
        enqueue_explanation(run_id, image_id)
    except Exception as exc:
        log.warning("could not enqueue the heatmap of image %s: %s", image_id, exc)
        with session_scope() as session:
            row = find_explanation(session, run_id, image_id)
            if row is not None and row.status == "computing":
                row.status = "failed"
                row.error = (
                    "The task queue (Redis) could not be reached, so no worker received this "
                    "request. Check that Redis and a worker are running, then try again."
                )


def get_explanation(session: Session, run: Run, image_id: int) -> Explanation:
    row = find_explanation(session, run.id, image_id)
    if row is None:
        raise ExplanationNotFound()
    return row


def heatmap_path(session: Session, run: Run, image_id: int) -> Path:
    row = get_explanation(session, run, image_id)
    path = recorded_file(row.path) if row.status == "ready" and row.path else None
    if path is None or not path.is_file():
        raise ExplanationNotFound("This heatmap is not ready.")
    return path
