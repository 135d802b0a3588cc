from __future__ import annotations

import re
import unicodedata
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.schemas import Body, clean_name, name_field

COLOR_PATTERN = "^#[0-9a-fA-F]{6}$"
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")  # with fullmatch: "$" would let "#1a2b3c\n" through
LABEL_MAX_CHARS = 100


def label_name(raw: str) -> str:
    """A label name from a form, a folder or a zip: NFC-normalised and tidied, so that the
    same word typed on two systems is one label."""
    name = clean_name(unicodedata.normalize("NFC", raw), "label name")
    if len(name) > LABEL_MAX_CHARS:
        raise ValueError(f"label name is longer than {LABEL_MAX_CHARS} characters")
    return name


class ProjectIn(Body):
    name: str = name_field(200)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return clean_name(value, "project name")


class LabelIn(Body):
    name: str = name_field(LABEL_MAX_CHARS)
    color: str | None = Field(default=None, json_schema_extra={"pattern": COLOR_PATTERN})

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return label_name(value)

    @field_validator("color")
    @classmethod
    def _color(cls, value: str | None) -> str | None:
        if value is not None and not _COLOR.fullmatch(value):
            raise ValueError("colour must look like #1a2b3c")
        return value


class LabelPatch(Body):
    name: str | None = name_field(LABEL_MAX_CHARS, default=None)
    color: str | None = Field(default=None, json_schema_extra={"pattern": COLOR_PATTERN})

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else label_name(value)

    @field_validator("color")
    @classmethod
    def _color(cls, value: str | None) -> str | None:
        return LabelIn._color(value)


class SplitCounts(BaseModel):
    train: int = 0
    val: int = 0
    test: int = 0
    unassigned: int = 0


class LabelOut(BaseModel):
    id: int
    name: str
    color: str
    count: int = 0
    splits: SplitCounts = SplitCounts()


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    created_at: datetime
    updated_at: datetime
    image_count: int = 0
    run_count: int = 0


class TrainingReadiness(BaseModel):
    """Whether the labelled images can train a classifier, by the rule a run applies."""

    ready: bool
    blocker: str | None
    min_images_per_label: int


class DeployedModel(BaseModel):
    """The run whose model answers ``POST /api/projects/{pid}/predict``."""

    run_id: int
    name: str | None
    mode: str
    backbone: str
    accuracy: float | None
    deployed_at: datetime
    predict_url: str


class ProjectDetail(ProjectOut):
    deployed: DeployedModel | None = None
    labels: list[LabelOut]
    unlabeled: int
    splits: SplitCounts
    readiness: TrainingReadiness
