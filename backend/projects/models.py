from __future__ import annotations

import unicodedata

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from backend.db import Base, TimestampMixin


class Project(TimestampMixin, Base):
    __tablename__ = "project"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))

    labels: Mapped[list[Label]] = relationship(
        back_populates="project", cascade="all, delete-orphan", order_by="Label.id"
    )


def label_key(name: str) -> str:
    """What two labels of a project may not share: their name up to case and Unicode form
    ('Ants' and 'ants', a precomposed 'é' and 'e' + combining accent, are one key)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


class Label(TimestampMixin, Base):
    """A class the user wants the model to recognise."""

    __tablename__ = "label"
    __table_args__ = (
        UniqueConstraint("project_id", "name_key", name="uq_label_project_id_name_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    name_key: Mapped[str] = mapped_column(String(320))  # casefolding may lengthen a name
    color: Mapped[str] = mapped_column(String(7), default="#4f7cff")

    project: Mapped[Project] = relationship(back_populates="labels")

    @validates("name")
    def _keep_key(self, _: str, name: str) -> str:
        self.name_key = label_key(name)
        return name
