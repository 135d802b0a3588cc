from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.images.schemas import ImageIds, ImagePatch
from backend.schemas import Body

HealthStatus = Literal["computing", "ready", "failed"]
FixSource = Literal["label_issues", "mistakes", "confusion", "findings", "suggestions", "gallery"]


class FindingOut(BaseModel):
    kind: str
    severity: Literal["error", "warning", "info"]
    count: int
    message: str
    why: str
    image_ids: list[int]
    fixes: list[str]


class DuplicateOut(BaseModel):
    image_ids: list[int]
    kind: Literal["exact", "near"]
    across_splits: bool
    across_labels: bool
    labels: list[str | None]
    splits: list[str | None]


class LabelIssueOut(BaseModel):
    image_id: int
    given_label: str
    suggested_label: str
    # How likely the given label is wrong (1 - its out-of-fold probability); most likely first.
    score: float
    confidence: float


class SuggestionOut(BaseModel):
    image_id: int
    suggested_label: str
    confidence: float


class HealthOut(BaseModel):
    """The data doctor's report; ``current`` is false while a newer one is being computed."""

    status: HealthStatus
    message: str | None
    stage: str
    images_done: int
    images_total: int
    requested_at: datetime
    computed_at: datetime | None
    current: bool
    backbone: str | None
    findings: list[FindingOut]
    label_issues: list[LabelIssueOut]
    duplicates: list[DuplicateOut]
    domain_fit: dict[str, Any] | None
    suggestions: list[SuggestionOut]
    labels_needed: dict[str, Any] | None
    estimate: dict[str, Any] | None
    # What the fixes since the previous report did: {relabelled, accuracy_before, accuracy_after}.
    effect: dict[str, Any] | None
    stats: dict[str, Any] | None


class FixIn(ImagePatch):
    """Relabel and/or move images where a problem was found; the fix can be undone."""

    # A fix names a label, a split or both (NothingToChange otherwise): the schema says so.
    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["label"]}, {"required": ["split"]}]}
    )

    source: FixSource = "findings"
    # Start a fresh check after the fix (a review queue sends false and rechecks at the end).
    recheck: bool = True


class DeleteIn(ImageIds):
    """Delete images where a problem was found; the fix can be undone (the files are kept)."""

    source: FixSource = "findings"
    recheck: bool = True


class AcceptSuggestionsIn(Body):
    min_confidence: float = Field(ge=0.0, le=1.0)
    recheck: bool = True


class FixOut(BaseModel):
    updated: int
    edit_id: int | None
    message: str


class UndoOut(BaseModel):
    restored: int
    message: str
