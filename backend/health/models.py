from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from backend.db import Base, TimestampMixin, UTCDateTime, utcnow

HEALTH_STATUSES = ("computing", "ready", "failed")


class HealthReport(TimestampMixin, Base):
    """The data doctor's latest report of one project, and the state of its computation.

    ``requested`` counts the computations asked for; a task computes one generation and
    stores it as ``computed``. The report is current when both are equal, so a task
    redelivered or overtaken by a newer request does no harm.
    """

    __tablename__ = "health_report"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(String(16), default="computing")
    # queued, featurizing, checking, done
    stage: Mapped[str] = mapped_column(String(16), default="queued")
    requested: Mapped[int] = mapped_column(Integer, default=0)
    computed: Mapped[int] = mapped_column(Integer, default=0)
    images_done: Mapped[int] = mapped_column(Integer, default=0)
    images_total: Mapped[int] = mapped_column(Integer, default=0)
    backbone: Mapped[str | None] = mapped_column(String(200), nullable=True)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Accuracy estimates of past reports, oldest first: the effect of fixes is measured
    # against them ({computed_at, backbone, accuracy, balanced_accuracy, n_labelled}).
    estimates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    computed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ImageEdit(Base):
    """One fix (relabel, move or delete of some images) with what it changed, so it can be
    undone."""

    __tablename__ = "image_edit"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    # relabel, move, accept_suggestions, delete
    action: Mapped[str] = mapped_column(String(32))
    # Where the fix was made: label_issues, mistakes, confusion, findings, suggestions.
    source: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer)
    # [{id, label, split, split_source}] of each image before the fix; a deletion also keeps
    # the rest of the row (sha256, filename, format, width, height, size_bytes, created_at).
    before: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


def kept_for_undo(session: Session) -> set[str]:
    """SHA-256 of the images deleted by fixes not undone yet: their files must stay (the
    blob removal after a deletion and ``autodl gc`` keep them)."""
    befores = session.scalars(
        select(ImageEdit.before).where(ImageEdit.action == "delete", ImageEdit.undone_at.is_(None))
    )
    return {row["sha256"] for before in befores for row in before}
