"""The data doctor's side of the API: start checks, read the report, fix and undo."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.config import Settings
from backend.db import after_commit, session_scope, utcnow
from backend.errors import Conflict, InvalidInput, NotFound
from backend.health.models import HealthReport, ImageEdit
from backend.health.schemas import (
    AcceptSuggestionsIn,
    DeleteIn,
    DuplicateOut,
    FindingOut,
    FixIn,
    FixOut,
    HealthOut,
    LabelIssueOut,
    SuggestionOut,
    UndoOut,
)
from backend.images.ingest import ensure_label
from backend.images.models import Image
from backend.images.schemas import ImagePatch
from backend.images.service import delete_images, update_images
from backend.projects.models import Label, Project
from backend.queue import enqueue_health
from backend.storage import ImageStore

log = logging.getLogger(__name__)

RELABELS = ("relabel", "accept_suggestions")


class HealthUnavailable(Conflict):
    detail = "The data doctor cannot examine this project yet."


class HealthNotComputed(NotFound):
    detail = (
        "This project has not been examined yet: start a check with "
        "POST /api/projects/{pid}/health (or `autodl health`)."
    )


class EditNotFound(NotFound):
    detail = "No such fix in this project."


class EditAlreadyUndone(Conflict):
    detail = "This fix has already been undone."


class NothingToChange(InvalidInput):
    detail = "Say what to change: a label, a split, or both."


class NothingToAccept(Conflict):
    detail = "No suggestion is that confident; lower the threshold, or label them by hand."


# ---------------------------------------------------------------- checks


def label_counts(session: Session, project_id: int) -> tuple[int, dict[str, int]]:
    """Images of the project, and images per label name."""
    total = session.scalar(select(func.count()).where(Image.project_id == project_id)) or 0
    rows = session.execute(
        select(Label.name, func.count())
        .join(Image, Image.label_id == Label.id)
        .where(Label.project_id == project_id)
        .group_by(Label.name)
    ).all()
    return total, {name: n for name, n in rows}


def examinable_problem(total: int, counts: dict[str, int]) -> str | None:
    """Why a project cannot be examined, in words; None when it can."""
    if total == 0:
        return (
            "This project has no images yet. Upload some pictures; the doctor checks them "
            "as soon as they arrive."
        )
    ready = sorted(name for name, n in counts.items() if n >= 2)
    if len(ready) < 2:
        now = f"only “{ready[0]}” has" if ready else "no label has"
        return (
            "The doctor compares labels with each other, so it needs at least 2 labels with "
            f"2 or more images each ({now} enough). Label more images, then check again."
        )
    return None


def check_examinable(session: Session, project: Project) -> None:
    problem = examinable_problem(*label_counts(session, project.id))
    if problem:
        raise HealthUnavailable(problem)


def request_check(session: Session, project_id: int) -> HealthReport:
    """Ask for a fresh report; its task is sent once this transaction commits."""
    row = session.scalar(select(HealthReport).where(HealthReport.project_id == project_id))
    if row is None:
        row = HealthReport(project_id=project_id, requested=0, computed=0, estimates=[])
        session.add(row)
    row.requested += 1
    row.status, row.stage, row.error = "computing", "queued", None
    row.images_done = row.images_total = 0
    row.heartbeat_at = utcnow()
    session.flush()
    generation = row.requested
    after_commit(session, lambda: enqueue_or_fail(project_id, generation))
    return row


def request_check_if_examinable(session: Session, project_id: int) -> None:
    """After uploads and runs: refresh the report, unless there is nothing to examine."""
    if examinable_problem(*label_counts(session, project_id)) is None:
        request_check(session, project_id)


def enqueue_or_fail(project_id: int, generation: int) -> None:
    try:
        enqueue_health(project_id, generation)
    except Exception as exc:
        log.warning("could not enqueue the health check of project %s: %s", project_id, exc)
        with session_scope() as session:
            row = session.scalar(select(HealthReport).where(HealthReport.project_id == project_id))
            if row is not None and row.requested == generation:
                row.status, row.stage = "failed", "done"
                row.error = (
                    "The task queue (Redis) could not be reached, so no worker received this "
                    "check. Check that Redis and a worker are running, then check again."
                )


# ---------------------------------------------------------------- the report


def _progress_message(row: HealthReport, settings: Settings) -> tuple[str, str]:
    """Status and message of a computation in progress (a stopped worker shows as failed)."""
    stale = utcnow() - timedelta(seconds=settings.worker_heartbeat_timeout_s)
    if row.stage != "queued" and row.heartbeat_at is not None and row.heartbeat_at < stale:
        return "failed", (
            "The check stopped: the worker computing it stopped responding (it may have been "
            "restarted). Check again."
        )
    if row.stage == "featurizing":
        return "computing", (
            f"The images are not featurized yet: computing their embeddings with "
            f"{row.backbone} ({row.images_done} of {row.images_total} done). The report "
            "follows."
        )
    if row.stage == "checking":
        return "computing", "Looking for duplicates, label errors and the rest…"
    return "computing", "Waiting for a worker (after the run it is training, if any)."


def health_out(session: Session, project: Project, settings: Settings) -> HealthOut:
    check_examinable(session, project)
    row = session.scalar(select(HealthReport).where(HealthReport.project_id == project.id))
    if row is None:
        raise HealthNotComputed(HealthNotComputed.detail.replace("{pid}", str(project.id)))
    status, message = row.status, row.error
    if status == "computing":
        status, message = _progress_message(row, settings)
    report: dict[str, Any] = row.report or {}
    current = _current_images(session, project.id)
    return HealthOut(
        status=status,  # type: ignore[arg-type]
        message=message,
        stage=row.stage,
        images_done=row.images_done,
        images_total=row.images_total,
        requested_at=row.updated_at,
        computed_at=row.computed_at,
        current=row.computed == row.requested and row.report is not None,
        backbone=report.get("backbone", row.backbone),
        findings=[
            FindingOut.model_validate(
                {**f, "image_ids": [i for i in f["image_ids"] if i in current]}
            )
            for f in report.get("findings", [])
        ],
        label_issues=[
            LabelIssueOut.model_validate(issue)
            for issue in report.get("label_issues", [])
            if current.get(issue["image_id"], ("", None))[0] == issue["given_label"]
        ],
        duplicates=_live_duplicates(report.get("duplicates", []), current),
        domain_fit=report.get("domain_fit"),
        suggestions=[
            SuggestionOut.model_validate(s)
            for s in report.get("suggestions", [])
            if s["image_id"] in current and current[s["image_id"]][0] is None
        ],
        labels_needed=report.get("labels_needed"),
        estimate=report.get("estimate"),
        effect=report.get("effect"),
        stats=report.get("stats"),
    )


def _current_images(session: Session, project_id: int) -> dict[int, tuple[str | None, str | None]]:
    """Label name and split of every image of the project, now."""
    rows = session.execute(
        select(Image.id, Label.name, Image.split)
        .outerjoin(Label, Label.id == Image.label_id)
        .where(Image.project_id == project_id)
    ).all()
    return {image_id: (label, split) for image_id, label, split in rows}


def _live_duplicates(
    groups: list[dict[str, Any]], current: dict[int, tuple[str | None, str | None]]
) -> list[DuplicateOut]:
    """Duplicate groups as the images are now: deleted copies gone, moves and relabels seen."""
    live = []
    for group in groups:
        ids = [i for i in group["image_ids"] if i in current]
        if len(ids) < 2:
            continue
        labels = [current[i][0] for i in ids]
        splits = [current[i][1] for i in ids]
        live.append(
            DuplicateOut(
                image_ids=ids,
                kind=group["kind"],
                across_splits=len({s for s in splits if s}) > 1,
                across_labels=len({lab for lab in labels if lab}) > 1,
                labels=labels,
                splits=splits,
            )
        )
    return live


def relabelled_since(session: Session, project_id: int, since: datetime | None) -> int:
    """Images relabelled by fixes (not undone) after ``since``."""
    query = select(func.coalesce(func.sum(ImageEdit.count), 0)).where(
        ImageEdit.project_id == project_id,
        ImageEdit.action.in_(RELABELS),
        ImageEdit.undone_at.is_(None),
    )
    if since is not None:
        query = query.where(ImageEdit.created_at > since)
    return int(session.scalar(query) or 0)


# ---------------------------------------------------------------- fixes and undo


def _snapshot(session: Session, project: Project, ids: list[int]) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Image.id, Label.name, Image.split, Image.split_source)
        .outerjoin(Label, Label.id == Image.label_id)
        .where(Image.project_id == project.id, Image.id.in_(set(ids)))
        .order_by(Image.id)
    ).all()
    return [
        {"id": image_id, "label": label, "split": split, "split_source": source}
        for image_id, label, split, source in rows
    ]


def _record(
    session: Session, project: Project, action: str, source: str, before: list[dict[str, Any]]
) -> ImageEdit:
    edit = ImageEdit(
        project_id=project.id, action=action, source=source, count=len(before), before=before
    )
    session.add(edit)
    session.flush()
    return edit


def _fix_words(count: int, patch: ImagePatch) -> str:
    images = f"{count} image{'s' if count != 1 else ''}"
    parts = []
    if "label" in patch.model_fields_set:
        parts.append(f"labelled “{patch.label}”" if patch.label else "unlabelled")
    if "split" in patch.model_fields_set:
        parts.append(f"moved to {patch.split}" if patch.split else "taken out of their split")
    return f"{images} {' and '.join(parts)}."


def apply_fix(session: Session, project: Project, body: FixIn) -> FixOut:
    """Relabel and/or move images, remembering how they were so the fix can be undone."""
    if not {"label", "split"} & body.model_fields_set:
        raise NothingToChange()
    before = _snapshot(session, project, body.ids)
    updated = update_images(session, project, body)
    action = "relabel" if "label" in body.model_fields_set else "move"
    edit = _record(session, project, action, body.source, before)
    if body.recheck:
        request_check_if_examinable(session, project.id)
    return FixOut(updated=updated, edit_id=edit.id, message=_fix_words(updated, body))


def accept_suggestions(session: Session, project: Project, body: AcceptSuggestionsIn) -> FixOut:
    """Label every unlabelled image whose suggestion is at least ``min_confidence`` sure."""
    row = session.scalar(select(HealthReport).where(HealthReport.project_id == project.id))
    suggestions = (row.report or {}).get("suggestions", []) if row else []
    current = _current_images(session, project.id)
    chosen = [
        s
        for s in suggestions
        if s["confidence"] >= body.min_confidence
        and s["image_id"] in current
        and current[s["image_id"]][0] is None
    ]
    if not chosen:
        raise NothingToAccept()
    before = _snapshot(session, project, [s["image_id"] for s in chosen])
    by_label: dict[str, list[int]] = {}
    for s in chosen:
        by_label.setdefault(s["suggested_label"], []).append(s["image_id"])
    for label, ids in by_label.items():
        update_images(session, project, ImagePatch(ids=ids, label=label))
    edit = _record(session, project, "accept_suggestions", "suggestions", before)
    if body.recheck:
        request_check_if_examinable(session, project.id)
    counts = Counter(s["suggested_label"] for s in chosen)
    listed = ", ".join(f"{n} “{name}”" for name, n in counts.most_common())
    return FixOut(
        updated=len(chosen),
        edit_id=edit.id,
        message=f"Labelled {len(chosen)} images as suggested ({listed}).",
    )


# What an undoable deletion remembers of each image, besides its label's name.
_ROW_FIELDS = ("id", "sha256", "filename", "format", "width", "height", "size_bytes")


def delete_fix(session: Session, settings: Settings, project: Project, body: DeleteIn) -> FixOut:
    """Delete images, remembering their rows and keeping their files so that the fix can be
    undone (the review queue's and the findings' Delete)."""
    rows = session.execute(
        select(Image, Label.name)
        .outerjoin(Label, Label.id == Image.label_id)
        .where(Image.project_id == project.id, Image.id.in_(set(body.ids)))
        .order_by(Image.id)
    ).all()
    before = [
        {
            **{name: getattr(image, name) for name in _ROW_FIELDS},
            "label": label,
            "split": image.split,
            "split_source": image.split_source,
            "created_at": image.created_at.isoformat(),
        }
        for image, label in rows
    ]
    deleted = delete_images(session, settings, project, body.ids, keep_files=True)
    edit = _record(session, project, "delete", body.source, before)
    if body.recheck:
        request_check_if_examinable(session, project.id)
    words = f"{deleted} image{'s' if deleted != 1 else ''}"
    return FixOut(updated=deleted, edit_id=edit.id, message=f"{words} deleted.")


def _restore_deleted(
    session: Session, settings: Settings, project: Project, before: list[dict[str, Any]]
) -> tuple[int, int]:
    """Put deleted images back (with their old ids where still free); (restored, not)."""
    shas = [b["sha256"] for b in before]
    present = set(
        session.scalars(
            select(Image.sha256).where(Image.project_id == project.id, Image.sha256.in_(shas))
        )
    )
    taken = set(session.scalars(select(Image.id).where(Image.id.in_([b["id"] for b in before]))))
    store = ImageStore(settings)
    restored = 0
    for b in before:
        # Uploaded again since, or its bytes removed (another project deleted its copy).
        if b["sha256"] in present or not store.has(b["sha256"]):
            continue
        label = ensure_label(session, project, b["label"]).id if b["label"] else None
        image = Image(
            project_id=project.id,
            label_id=label,
            split=b["split"],
            split_source=b["split_source"],
            created_at=datetime.fromisoformat(b["created_at"]),
            **{name: b[name] for name in _ROW_FIELDS if name != "id"},
        )
        if b["id"] not in taken:
            image.id = b["id"]
        session.add(image)
        present.add(b["sha256"])
        restored += 1
    session.flush()
    return restored, len(before) - restored


def undo_edit(
    session: Session, settings: Settings, project: Project, edit_id: int, recheck: bool = True
) -> UndoOut:
    """Put the images of one fix back as they were (those deleted since stay deleted; a
    deletion's images come back with their label and split)."""
    edit = session.get(ImageEdit, edit_id)
    if edit is None or edit.project_id != project.id:
        raise EditNotFound()
    if edit.undone_at is not None:
        raise EditAlreadyUndone()
    if edit.action == "delete":
        restored, lost = _restore_deleted(session, settings, project, edit.before)
        edit.undone_at = utcnow()
        session.flush()
        session.expire_all()
        if recheck:
            request_check_if_examinable(session, project.id)
        message = f"Undone: {restored} image{'s' if restored != 1 else ''} restored."
        if lost:
            message += f" {lost} could not be: uploaded again since, or their files are gone."
        return UndoOut(restored=restored, message=message)
    images = {
        image.id: image
        for image in session.scalars(
            select(Image).where(
                Image.project_id == project.id, Image.id.in_([b["id"] for b in edit.before])
            )
        )
    }
    restored = 0
    for before in edit.before:
        image = images.get(before["id"])
        if image is None:
            continue
        label = before["label"]
        image.label_id = ensure_label(session, project, label).id if label else None
        image.split, image.split_source = before["split"], before["split_source"]
        restored += 1
    edit.undone_at = utcnow()
    session.flush()
    session.expire_all()
    if recheck:
        request_check_if_examinable(session, project.id)
    return UndoOut(
        restored=restored,
        message=f"Undone: {restored} image{'s' if restored != 1 else ''} put back as before.",
    )
