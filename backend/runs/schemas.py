from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    computed_field,
    field_validator,
    model_validator,
)

from backend.runs.models import RunMode, RunStatus
from backend.schemas import Body, JsonInt, clean_name, integral_float, name_field

MODEL_NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,200}$"
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
WILSON_Z = 1.96  # 95 % interval
RUN_NAME_MAX_CHARS = 200

HeadKind = Literal["auto", "logreg", "svm", "mlp"]
TrainLayers = Literal["head", "last_blocks", "all"]
Augmentation = Literal["none", "light", "strong"]


class Contract(BaseModel):
    """A typed record of the run contract: keys nobody declared are an error, not data."""

    model_config = ConfigDict(extra="forbid")


class RunOptions(Contract):
    """Training options, parsed and defaulted once: the API stores them, the worker reads them
    back with this same model. Unknown keys are refused so typos do not silently do nothing;
    types are taken as declared ("0" is not a boolean, 5.0 is the integer 5)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    head: HeadKind = "logreg"
    val_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    seed: JsonInt = Field(default=0, ge=0, le=2**32 - 1)  # numpy and torch take 32-bit seeds
    # Fine-tuning (mode "finetune", and auto when it decides to fine-tune).
    train_layers: TrainLayers = "last_blocks"
    last_blocks: JsonInt = Field(default=2, ge=1, le=20)
    epochs: JsonInt = Field(default=5, ge=1, le=500)
    time_budget_s: float | None = Field(default=None, gt=0)
    batch_size: Annotated[int, Ge(1), Le(1024), BeforeValidator(integral_float)] | None = None
    learning_rate: float | None = Field(default=None, gt=0, lt=1)
    label_smoothing: float = Field(default=0.1, ge=0, lt=1)
    layer_decay: float | None = Field(default=None, gt=0, le=1)
    augmentation: Augmentation = "light"
    pretrained: bool = True
    # Auto: which backbones to rank (defaults to those with weights available).
    candidates: list[str] | None = None


def _run_name(value: str | None) -> str | None:
    return None if value is None else clean_name(value, "run name")


RunName = Annotated[str | None, AfterValidator(_run_name)]


class RunIn(Contract):
    # Strict, like every request body (backend.schemas.Body): "0" is not a boolean here.
    model_config = ConfigDict(extra="forbid", strict=True)

    mode: RunMode = Field(default=RunMode.LINEAR, strict=False)  # the enum from its value
    backbone: str = Field(
        default="tf_efficientnet_lite0", json_schema_extra={"pattern": MODEL_NAME_PATTERN}
    )
    options: RunOptions = Field(default_factory=RunOptions)
    name: RunName = name_field(RUN_NAME_MAX_CHARS, default=None)

    @field_validator("backbone")
    @classmethod
    def _backbone(cls, value: str) -> str:
        if not _MODEL_NAME.fullmatch(value):
            raise ValueError("backbone must be a timm model name such as tf_efficientnet_lite0")
        return value


# ---------------------------------------------------------------- metrics


class ClassScores(Contract):
    precision: float
    recall: float
    f1: float
    support: int


class ConfusionMatrix(Contract):
    """Rows are the true labels, columns the predicted ones, both in ``labels`` order."""

    labels: list[str]
    matrix: list[list[int]]


class MajorityBaseline(Contract):
    """What always answering the most frequent label would score on the same images."""

    label: str
    accuracy: float


class Evaluation(Contract):
    """Scores of a classifier on one split; the derived numbers are computed here, once."""

    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    log_loss: float
    per_class: dict[str, ClassScores]
    confusion_matrix: ConfusionMatrix

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n_images(self) -> int:
        return sum(scores.support for scores in self.per_class.values())

    @computed_field  # type: ignore[prop-decorator]
    @property
    def accuracy_interval(self) -> tuple[float, float]:
        """The 95 % Wilson score interval of the accuracy on ``n_images`` images."""
        n, p, z = self.n_images, self.accuracy, WILSON_Z
        if not n:
            return 0.0, 1.0
        denominator = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denominator
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
        return max(0.0, centre - half), min(1.0, centre + half)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def majority_baseline(self) -> MajorityBaseline | None:
        if not self.n_images:
            return None
        label, scores = max(self.per_class.items(), key=lambda item: item[1].support)
        return MajorityBaseline(label=label, accuracy=scores.support / self.n_images)


class FeaturizedCounts(Contract):
    computed: int
    cached: int
    skipped_unreadable: int


class WeightsUsed(Contract):
    source: str
    digest: str


class RuntimeUsed(Contract):
    """How the CPU featurized one backbone's images in a run. Training images take the path
    measured fastest without losing accuracy on this machine (bf16, int8 or fp32);
    validation and test images are always fp32, as the exported model runs them, so the
    scores shown are the downloaded model's."""

    train: str  # runtime and precision: "openvino bf16", "onnxruntime int8", "onnxruntime f32"
    held_out: str
    reason: str
    measured_in_run: bool = False  # this run made the once-per-machine measurement
    measured_at: str | None = None


class Int8Report(Contract):
    """The optional int8 ONNX download (static QDQ, calibrated on the run's training images)
    against the fp32 model, both run on the same validation images."""

    size_bytes: int
    fp32_size_bytes: int
    accuracy: float
    fp32_accuracy: float
    agreement: float  # fraction of the validation images both models answer alike
    n_val: int
    calibration_images: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def change_points(self) -> float:
        """Validation accuracy of int8 minus fp32's, in percentage points (one decimal)."""
        return round(100 * (self.accuracy - self.fp32_accuracy), 1)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> str:
        """What the run page prints, e.g. "int8: 2.1x smaller, val accuracy 95.4 % (-0.7 pt
        vs fp32)" (with a true minus sign)."""
        change, ratio = self.change_points, self.fp32_size_bytes / self.size_bytes
        sign = "\u2212" if change < 0 else "+"
        size = f"{ratio:.1f}x smaller" if ratio >= 1 else f"{1 / ratio:.1f}x larger"
        return (
            f"int8: {size}, val accuracy {100 * self.accuracy:.1f} % "
            f"({sign}{abs(change):.1f} pt vs fp32)"
        )


class HeadReport(Contract):
    """The classifier head a linear probe trained, and how it was chosen."""

    kind: str
    params: dict[str, Any]
    # Cross-validated accuracy per head kind tried; null when no cross-validation was
    # possible (a label with a single training picture): schemathesis found it as NaN,
    # which the answer writes as null, under a schema that said number.
    cv_scores: dict[str, float | None]
    class_counts: dict[str, int]
    class_weights: dict[str, float]
    imbalance_ratio: float


class FinetuneReport(Contract):
    train_layers: TrainLayers
    last_blocks: int | None
    epochs_planned: int
    stopped: str
    learning_rate: float
    layer_decay: float | None
    label_smoothing: float
    augmentation: Augmentation
    batch_size_requested: int
    out_of_memory_halvings: int
    class_balancing: str
    device: str
    amp: str
    trainable_params: int
    total_params: int
    train_images_per_s: float
    start_val_loss: float
    start_val_accuracy: float


class LinearProbeReport(Contract):
    """The linear probe a fine-tune started from."""

    accuracy: float
    C: float | None


class TrainedModel(Contract):
    """What a run's model is: the one answer the API, the run page, the runs table, the
    model card and the file names give."""

    mode: RunMode  # how it was trained: linear or finetune (an auto run says which it kept)
    backbones: list[str]  # every backbone the model runs, in its inputs' order
    head: str  # the classifier on top, in words

    @property
    def slug(self) -> str:
        """The backbones as a file name part: ``tf_efficientnet_lite0`` or ``a+b+c``."""
        return "+".join(self.backbones)


class EnsembleMember(Contract):
    backbones: list[str]
    weight: float
    C: float


class EnsembleReport(Contract):
    """Auto's combined probe: how its members were combined and how that was chosen."""

    kind: Literal["single", "average", "concat"]
    flip: bool
    members: list[EnsembleMember]
    folds: int
    repeats: int


class RunMetrics(Evaluation):
    """What every finished run reports: validation scores (``eval_split``), the data used,
    where the time went, and one section per mode that trained it."""

    eval_split: Literal["val"] = "val"
    n_train: int
    n_val: int
    n_test: int
    test: Evaluation | None = None
    featurized: FeaturizedCounts
    timings: dict[str, float]
    weights: WeightsUsed
    head: HeadReport | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    batch_size: int | None = None
    finetune: FinetuneReport | None = None
    linear_probe: LinearProbeReport | None = None
    model: TrainedModel | None = None
    ensemble: EnsembleReport | None = None
    runtimes: dict[str, RuntimeUsed] = Field(default_factory=dict)  # per backbone
    int8: Int8Report | None = None  # the int8 ONNX download, once made

    @model_validator(mode="before")
    @classmethod
    def _from_auto_choice(cls, data: Any) -> Any:
        """Metrics stored before ``model`` named auto's choice ``auto: {backbone, mode}``."""
        if isinstance(data, dict) and "auto" in data:
            data = dict(data)
            auto = data.pop("auto") or {}
            if "model" not in data and "backbone" in auto:
                head = (data.get("head") or {}).get("kind", "fine-tuned network")
                data["model"] = {"mode": auto["mode"], "backbones": [auto["backbone"]],
                                 "head": head}  # fmt: skip
        return data

    # Formats still being made after the run succeeded, and those that could not be made.
    exports_pending: list[str] = Field(default_factory=list)
    export_errors: dict[str, str] = Field(default_factory=dict)
    # The id of the label each class name was when trained (runs since this was recorded).
    label_ids: dict[str, int] = Field(default_factory=dict)


class EpochRecord(Contract):
    """One epoch of fine-tuning, as the training curves show it."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float


class CandidateScore(Contract):
    """One way auto could combine the backbones, measured by repeated stratified
    cross-validation on the training split (or a backbone it could not use, with why)."""

    candidate: str
    kind: Literal["single", "average", "concat"] | None
    backbones: list[str]
    flip: bool
    cv_accuracy: float | None  # a fraction of the training images
    cv_log_loss: float | None  # nats per image
    seconds: float
    kept: bool = False
    error: str | None = None


class ChosenModel(Contract):
    backbones: list[str]
    mode: RunMode
    combiner: str
    val_accuracy: float
    linear_val_accuracy: float
    finetune_val_accuracy: float | None


class FinetunePlan(Contract):
    tried: bool
    estimate_s: float
    gpu: bool


class AutoDecision(Contract):
    """Why auto trained what it trained, in a person's words and in numbers."""

    reason: str
    candidates: list[CandidateScore]
    chosen: ChosenModel
    finetune: FinetunePlan
    ranking: str

    @model_validator(mode="before")
    @classmethod
    def _from_single_backbone_ranking(cls, data: Any) -> Any:
        """Decisions stored before Auto combined backbones ranked one backbone each."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data["candidates"] = [
            {
                "candidate": c["backbone"],
                "kind": None if c.get("error") else "single",
                "backbones": [c["backbone"]],
                "flip": False,
                "cv_accuracy": c.get("cv_accuracy"),
                "cv_log_loss": None,
                "seconds": c.get("seconds", 0.0),
                "error": c.get("error"),
            }
            if isinstance(c, dict) and "score" in c
            else c
            for c in data.get("candidates", [])
        ]
        chosen = data.get("chosen")
        if isinstance(chosen, dict) and "backbone" in chosen:
            chosen = {k: v for k, v in chosen.items() if k != "backbone"}
            data["chosen"] = {**chosen, "backbones": [data["chosen"]["backbone"]],
                              "combiner": "one backbone"}  # fmt: skip
        return data


class RunPatch(Body):
    """Rename a run; an empty name is refused, ``null`` drops the name."""

    name: RunName = name_field(RUN_NAME_MAX_CHARS, default=None)


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
    name: str | None
    deployed: bool
    deployed_at: datetime | None
    mode: RunMode
    backbone: str
    options: RunOptions
    status: RunStatus
    stage: str
    stage_detail: str | None
    unit: str
    progress: float
    images_done: int
    images_total: int
    eta_s: float | None
    metrics: RunMetrics | None
    history: list[EpochRecord] | None
    decision: AutoDecision | None
    error: str | None
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    artifacts: list[ArtifactOut]
    # {name the model was trained with: the label's name now} for labels renamed since.
    renamed_labels: dict[str, str] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def backbones(self) -> list[str]:
        """Every backbone the run's model runs once trained (``metrics.model``); before
        that, the one asked for (``backbone``, which an auto run may not keep)."""
        if self.metrics is not None and self.metrics.model is not None:
            return list(self.metrics.model.backbones)
        return [self.backbone]


class Snippets(BaseModel):
    python: str
    javascript: str
    csharp: str
    curl: str


class UsageInput(BaseModel):
    """One input of the exported model (an ensemble has one per backbone) and how a picture
    becomes it."""

    name: str
    input_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class UsageOut(BaseModel):
    """How to run this run's model elsewhere: its inputs and ready-to-copy code (the single
    ``input_*`` fields describe the first input)."""

    labels: list[str]
    input_name: str
    input_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    predict_url: str
    project_predict_url: str
    model_card_url: str | None
    snippets: Snippets
    inputs: list[UsageInput]


class EstimateOut(BaseModel):
    """Seconds a first run would take (embeddings not cached yet); None: not measured here."""

    linear_s: float | None
    finetune_s: float | None
    runs_measured: int
    # Where linear_s comes from: earlier runs and checks here, or (before any run) a short
    # measurement of the backbone on a few of this project's pictures (POST …/measure).
    source: Literal["runs", "measured"] | None = None
    measuring: bool = False


class MeasureIn(Contract):
    model_config = ConfigDict(extra="forbid", strict=True)

    backbone: str = Field(
        default="tf_efficientnet_lite0", json_schema_extra={"pattern": MODEL_NAME_PATTERN}
    )


class MeasureOut(BaseModel):
    backbone: str
    status: Literal["measuring", "measured"]


class EstimatesOut(BaseModel):
    images: int
    epochs: int
    backbones: dict[str, EstimateOut]


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
