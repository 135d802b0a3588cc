"""Projects and their labels, with the counts the dashboard shows."""

from __future__ import annotations

import colorsys
from collections import defaultdict

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backend.auth.models import User
from backend.errors import Conflict, NotFound
from backend.images.models import Image
from backend.projects.models import Label, Project, label_key
from backend.projects.schemas import (
    DeployedModel,
    LabelOut,
    ProjectDetail,
    ProjectOut,
    SplitCounts,
    TrainingReadiness,
)
from backend.runs.models import Run
from backend.runs.readiness import MIN_IMAGES_PER_LABEL, training_blocker
from backend.runs.service import deployed_run


class ProjectNotFound(NotFound):
    detail = "Project not found."


class LabelNotFound(NotFound):
    detail = "Label not found in this project."


class LabelExists(Conflict):
    detail = "A label with this name already exists in the project."


class LabelNameClash(Conflict):
    """Two labels a person would read as one: 'Ants' next to 'ants', or the same accented
    word typed on two systems (NFC and NFD forms)."""

    def __init__(self, name: str, existing: str) -> None:
        super().__init__(
            f"The label {name!r} would be confused with the existing label {existing!r}: label "
            f"names must differ by more than upper/lower case or accent encoding. Use "
            f"{existing!r}, or rename it first."
        )


def list_projects(session: Session, user: User) -> list[ProjectOut]:
    image_counts = (
        select(Image.project_id, func.count().label("n")).group_by(Image.project_id).subquery()
    )
    run_counts = select(Run.project_id, func.count().label("n")).group_by(Run.project_id).subquery()
    rows = session.execute(
        select(Project, image_counts.c.n, run_counts.c.n)
        .outerjoin(image_counts, image_counts.c.project_id == Project.id)
        .outerjoin(run_counts, run_counts.c.project_id == Project.id)
        .where(Project.owner_id == user.id)
        .order_by(Project.created_at.desc(), Project.id.desc())
    ).all()
    return [
        ProjectOut.model_validate(p).model_copy(
            update={"image_count": ni or 0, "run_count": nr or 0}
        )
        for p, ni, nr in rows
    ]


def get_project(session: Session, user: User, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None or project.owner_id != user.id:
        raise ProjectNotFound()
    return project


def create_project(session: Session, user: User, name: str) -> Project:
    project = Project(owner_id=user.id, name=name)
    session.add(project)
    session.flush()
    return project


def rename_project(session: Session, project: Project, name: str) -> Project:
    project.name = name
    session.flush()
    return project


def delete_project(session: Session, project: Project) -> None:
    session.delete(project)
    session.flush()


def project_detail(session: Session, project: Project) -> ProjectDetail:
    counts: dict[int | None, SplitCounts] = defaultdict(SplitCounts)
    rows = session.execute(
        select(Image.label_id, Image.split, func.count())
        .where(Image.project_id == project.id)
        .group_by(Image.label_id, Image.split)
    ).all()
    totals = SplitCounts()
    for label_id, split, n in rows:
        key = split if split in ("train", "val", "test") else "unassigned"
        setattr(counts[label_id], key, getattr(counts[label_id], key) + n)
        setattr(totals, key, getattr(totals, key) + n)
    labels = [
        LabelOut(
            id=label.id,
            name=label.name,
            color=label.color,
            count=_total(counts[label.id]),
            splits=counts[label.id],
        )
        for label in project.labels
    ]
    run_count = session.scalar(select(func.count()).where(Run.project_id == project.id)) or 0
    blocker = training_blocker({label.name: label.count for label in labels})
    base = ProjectOut.model_validate(project)
    return ProjectDetail(
        **base.model_dump(exclude={"image_count", "run_count"}),
        image_count=_total(totals),
        run_count=run_count,
        deployed=_deployed(session, project),
        labels=labels,
        unlabeled=_total(counts[None]),
        splits=totals,
        readiness=TrainingReadiness(
            ready=blocker is None, blocker=blocker, min_images_per_label=MIN_IMAGES_PER_LABEL
        ),
    )


def _deployed(session: Session, project: Project) -> DeployedModel | None:
    run = deployed_run(session, project)
    if run is None or run.deployed_at is None:
        return None
    accuracy = (run.metrics or {}).get("accuracy")
    return DeployedModel(
        run_id=run.id,
        name=run.name,
        mode=run.mode.value,
        backbone=run.backbone,
        accuracy=accuracy if isinstance(accuracy, float | int) else None,
        deployed_at=run.deployed_at,
        predict_url=f"/api/projects/{project.id}/predict",
    )


def _total(c: SplitCounts) -> int:
    return c.train + c.val + c.test + c.unassigned


def next_label_color(index: int) -> str:
    # Golden-angle hues keep neighbouring labels distinguishable.
    r, g, b = colorsys.hls_to_rgb((index * 0.618034) % 1.0, 0.5, 0.65)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def find_label(session: Session, project: Project, name: str) -> Label | None:
    """The project's label called ``name`` up to case and Unicode form."""
    return session.scalar(
        select(Label).where(Label.project_id == project.id, Label.name_key == label_key(name))
    )


def check_label_name_free(
    session: Session, project: Project, name: str, renaming: Label | None = None
) -> None:
    """409 unless ``name`` is free in ``project`` (``renaming`` may keep its own name)."""
    existing = find_label(session, project, name)
    if existing is None or existing is renaming:
        return
    if existing.name == name:
        raise LabelExists()
    raise LabelNameClash(name, existing.name)


def create_label(session: Session, project: Project, name: str, color: str | None = None) -> Label:
    check_label_name_free(session, project, name)
    n = session.scalar(select(func.count()).where(Label.project_id == project.id)) or 0
    label = Label(project_id=project.id, name=name, color=color or next_label_color(n))
    session.add(label)
    session.flush()
    return label


def get_label(session: Session, project: Project, label_id: int) -> Label:
    label = session.get(Label, label_id)
    if label is None or label.project_id != project.id:
        raise LabelNotFound()
    return label


def update_label(
    session: Session, project: Project, label: Label, name: str | None, color: str | None
) -> Label:
    if name is not None and name != label.name:
        check_label_name_free(session, project, name, renaming=label)
        label.name = name
    if color is not None:
        label.color = color
    session.flush()
    return label


def delete_label(session: Session, label: Label) -> None:
    """Delete a label; its images stay in the project, unlabelled."""
    session.execute(update(Image).where(Image.label_id == label.id).values(label_id=None))
    session.delete(label)
    session.flush()
