from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.db import Base, TimestampMixin, UTCDateTime, utcnow
from backend.projects.models import Label

SPLITS = ("train", "val", "test")


class Image(TimestampMixin, Base):
    """One uploaded picture; the bytes live once on disk under their SHA-256."""

    __tablename__ = "image"
    __table_args__ = (
        UniqueConstraint("project_id", "sha256"),
        # A large project's pages filtered by label or split (migration e4f1a9c2b7d8).
        Index("ix_image_project_label", "project_id", "label_id", "split"),
        Index("ix_image_project_split", "project_id", "split", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    label_id: Mapped[int | None] = mapped_column(
        ForeignKey("label.id", ondelete="SET NULL"), index=True, nullable=True
    )
    # train/val/test, or None until a run assigns one.
    split: Mapped[str | None] = mapped_column(String(5), nullable=True)
    # "user" when given at upload or by hand, "auto" when a run's stratified split chose it.
    split_source: Mapped[str | None] = mapped_column(String(4), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(8))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)

    label: Mapped[Label | None] = relationship(lazy="joined")


class UploadBatch(Base):
    """One upload request's outcome; the requests of one drop share ``upload_key`` and are
    shown together as one upload of the project's history."""

    __tablename__ = "upload_batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    upload_key: Mapped[str] = mapped_column(String(64))
    accepted: Mapped[int] = mapped_column(Integer)
    duplicates: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    # {label or "": {split or "unassigned": {"accepted": n, "duplicates": m}}}
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    rejected_files: Mapped[list[dict[str, str]]] = mapped_column(JSON)  # first few, with reasons
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
