from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")


class RunOptions(BaseModel):
    """Training options; unknown keys are refused so typos do not silently do nothing."""

    model_config = ConfigDict(extra="forbid")

    head: Literal["auto", "logreg", "svm", "mlp"] = "logreg"
    val_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)  # numpy and torch take 32-bit seeds
    # Fine-tuning (mode "finetune", and auto when it decides to fine-tune).
    train_layers: Literal["head", "last_blocks", "all"] = "last_blocks"
    last_blocks: int = Field(default=2, ge=1, le=20)
    epochs: int = Field(default=5, ge=1, le=500)
    time_budget_s: float | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, ge=1, le=1024)
    learning_rate: float | None = Field(default=None, gt=0, lt=1)
    label_smoothing: float = Field(default=0.1, ge=0, lt=1)
    layer_decay: float | None = Field(default=None, gt=0, le=1)
    augmentation: Literal["none", "light", "strong"] = "light"
    pretrained: bool = True
    # Auto: which backbones to rank (defaults to those with weights available).
    candidates: list[str] | None = None


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["linear", "finetune", "auto"] = "linear"
    backbone: str = "tf_efficientnet_lite0"
    options: RunOptions = Field(default_factory=RunOptions)

    @field_validator("backbone")
    @classmethod
    def _backbone(cls, value: str) -> str:
        value = value.strip()
        if not _MODEL_NAME.match(value):
            raise ValueError("backbone must be a timm model name such as tf_efficientnet_lite0")
        return value


class ArtifactOut(BaseModel):
    format: str
    filename: str
    size_bytes: int
    sha256: str
    created_at: datetime
    url: str


class RunOut(BaseModel):
    id: int
    project_id: int
    mode: str
    backbone: str
    options: dict[str, Any]
    status: str
    stage: str
    progress: float
    images_done: int
    images_total: int
    eta_s: float | None
    metrics: dict[str, Any] | None
    history: list[dict[str, Any]] | None
    decision: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    artifacts: list[ArtifactOut]


class PredictionOut(BaseModel):
    image_id: int | None
    filename: str
    split: str
    true_label: str
    predicted_label: str
    confidence: float
    probabilities: dict[str, float]
    correct: bool


class PredictionsOut(BaseModel):
    labels: list[str]
    items: list[PredictionOut]


class PredictOut(BaseModel):
    filename: str | None = None
    label: str
    probabilities: dict[str, float]


class BatchPredictOut(BaseModel):
    results: list[PredictOut]
    rejected: list[dict[str, str]]
