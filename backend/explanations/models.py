from __future__ import annotations

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, TimestampMixin


class Explanation(TimestampMixin, Base):
    """The Grad-CAM heatmap of one image under one run's model (cached as a PNG)."""

    __tablename__ = "explanation"
    __table_args__ = (UniqueConstraint("run_id", "image_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="computing")  # computing/ready/failed
    label: Mapped[str | None] = mapped_column(String(100), nullable=True)  # the class explained
    path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
