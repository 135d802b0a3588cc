from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.db import Base, TimestampMixin, UTCDateTime, utcnow
from backend.projects.models import Project


class RunStatus(StrEnum):
    """Where a run is in its life; backend/runs/transitions.py is the only writer."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class RunMode(StrEnum):
    """How a run trains; each has one strategy registered in worker/modes/."""

    LINEAR = "linear"
    FINETUNE = "finetune"
    AUTO = "auto"


def _stored_as_value(enum: type[StrEnum]) -> Enum:
    # VARCHAR holding the lower-case value, as the initial migration created the column.
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
    )


class Run(TimestampMixin, Base):
    """One training job; this row, not Celery, is the source of truth for its state."""

    __tablename__ = "run"
    # At most one deployed run per project (partial unique index on both databases).
    __table_args__ = (
        Index(
            "uq_run_deployed_project_id",
            "project_id",
            unique=True,
            sqlite_where=text("deployed_at IS NOT NULL"),
            postgresql_where=text("deployed_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    mode: Mapped[RunMode] = mapped_column(_stored_as_value(RunMode))
    backbone: Mapped[str] = mapped_column(String(200))
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[RunStatus] = mapped_column(
        _stored_as_value(RunStatus), default=RunStatus.QUEUED, index=True
    )
    stage: Mapped[str] = mapped_column(String(32), default=RunStatus.QUEUED.value)
    # What the stage works on ("tf_efficientnet_lite0", "epoch 2 of 5") and what
    # images_done/images_total count ("images" or "steps").
    stage_detail: Mapped[str | None] = mapped_column(String(200), nullable=True)
    unit: Mapped[str] = mapped_column(String(16), default="images", server_default="images")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    images_done: Mapped[int] = mapped_column(Integer, default=0)
    images_total: Mapped[int] = mapped_column(Integer, default=0)
    eta_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    history: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set on the one run whose model answers POST /api/projects/{pid}/predict.
    deployed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    project: Mapped[Project] = relationship()
    artifacts: Mapped[list[Artifact]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="Artifact.id"
    )

    @property
    def is_finished(self) -> bool:
        return self.status.is_terminal


class Prediction(Base):
    """A run's prediction for one held-out image."""

    __tablename__ = "prediction"
    __table_args__ = (UniqueConstraint("run_id", "image_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int | None] = mapped_column(
        ForeignKey("image.id", ondelete="SET NULL"), nullable=True
    )
    filename: Mapped[str] = mapped_column(String(255))
    split: Mapped[str] = mapped_column(String(5))
    true_label: Mapped[str] = mapped_column(String(100))
    predicted_label: Mapped[str] = mapped_column(String(100))
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[dict[str, float]] = mapped_column(JSON)


class Artifact(Base):
    """A complete, verified model file of a run."""

    __tablename__ = "artifact"
    __table_args__ = (UniqueConstraint("run_id", "format"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    format: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(1024))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    run: Mapped[Run] = relationship(back_populates="artifacts")
