from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.projects.schemas import LABEL_MAX_CHARS, label_name
from backend.schemas import MAX_ROW_ID, Body, RowId, name_field

SplitName = Literal["train", "val", "test"]


class AcceptedOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    filename: str
    label: str | None
    split: str | None


class DuplicateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    filename: str
    id: int


class RejectedOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    filename: str
    reason: str


class IngestOut(BaseModel):
    """What became of each uploaded file."""

    model_config = ConfigDict(from_attributes=True)

    accepted: list[AcceptedOut]
    duplicates: list[DuplicateOut]
    rejected: list[RejectedOut]


class ImageOut(BaseModel):
    id: int
    filename: str
    label: str | None
    label_id: int | None
    split: str | None
    split_source: str | None
    width: int
    height: int
    size_bytes: int
    format: str
    created_at: datetime
    file_url: str
    thumbnail_url: str


class ImagePage(BaseModel):
    items: list[ImageOut]
    total: int


class ImageFilter(BaseModel):
    """Filters of the image list; ``split=unassigned`` finds images without a split. The
    filters combine (``label`` with ``unlabeled=true`` finds nothing)."""

    label: str | None = None
    split: Literal["train", "val", "test", "unassigned", ""] | None = None
    unlabeled: bool = False


class ImageQuery(ImageFilter):
    """One page of the filtered images."""

    limit: int = Field(default=100, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=MAX_ROW_ID)


MAX_BULK_IDS = 10_000  # images one bulk relabel, move or delete takes


class ImageIds(Body):
    ids: list[RowId] = Field(min_length=1, max_length=MAX_BULK_IDS)


class ImagePatch(ImageIds):
    """Only the fields present change: ``label: null`` unlabels, ``split: null`` clears."""

    label: str | None = name_field(LABEL_MAX_CHARS, default=None)
    split: SplitName | None = None

    @field_validator("label")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        return label_name(value) if value is not None else None


class MatchingIds(BaseModel):
    """The images matching a filter, as many as a bulk change takes at once."""

    ids: list[int]
    total: int


class UpdatedOut(BaseModel):
    updated: int


class DeletedOut(BaseModel):
    deleted: int


class SplitOutcome(BaseModel):
    accepted: int = 0
    duplicates: int = 0


class UploadOut(BaseModel):
    """One upload of the project's history (the requests of one drop, added up)."""

    key: str
    started_at: datetime
    finished_at: datetime
    requests: int
    accepted: int
    duplicates: int
    rejected: int
    # label ("" for none) -> split ("unassigned" for none) -> counts
    counts: dict[str, dict[str, SplitOutcome]]
    rejected_files: list[RejectedOut]
