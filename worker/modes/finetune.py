"""Whole-model transfer as a run: linear-probe start, fine-tuning, the same outputs as linear."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from backend.runs.models import RunMode
from backend.runs.schemas import (
    FinetuneReport,
    LinearProbeReport,
    RunMetrics,
    RunOptions,
    TrainedModel,
    WeightsUsed,
)
from worker.modes.base import (
    Example,
    ModeContext,
    Outcome,
    Reporter,
    evaluation,
    register_mode,
    weights_used,
)
from worker.modes.embeddings import EmbeddedSplits, embed_splits, labels_of

if TYPE_CHECKING:
    from torch import nn

    from backend.inference.preprocess import Preprocess
    from worker.ml.finetune import FinetuneConfig, FinetuneResult
    from worker.ml.heads import TrainedHead

PROBE_SPAN = (0.02, 0.15)
TRAIN_SPAN = (0.16, 0.93)


def finetune_config(options: RunOptions) -> FinetuneConfig:
    """The run's options as the fine-tuning step takes them."""
    from worker.ml.finetune import FinetuneConfig

    return FinetuneConfig(
        train_layers=options.train_layers,
        last_blocks=options.last_blocks,
        epochs=options.epochs,
        time_budget_s=options.time_budget_s,
        batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        layer_decay=options.layer_decay,
        label_smoothing=options.label_smoothing,
        augmentation=options.augmentation,
        seed=options.seed,
        pretrained=options.pretrained,
    )


@dataclass(frozen=True)
class _Probe:
    """The linear probe the classifier starts from, and its scores."""

    head: TrainedHead
    labels: list[str]
    accuracy: float
    seconds: float


@register_mode(RunMode.FINETUNE)
def train_finetune(
    examples: list[Example], options: RunOptions, reporter: Reporter, context: ModeContext
) -> Outcome:
    # Cached embeddings give a linear probe in seconds: the classifier starts from it.
    data = embed_splits(examples, context, reporter, PROBE_SPAN)
    probe = _linear_probe(data, options)
    config = finetune_config(options)
    result = _finetune(data, probe, config, reporter, context)

    reporter.stage("evaluating", 0.94, detail=context.backbone)
    weights = weights_used(result.weights)
    return Outcome(
        labels=probe.labels,
        val_examples=data.val,
        val_proba=result.val_proba,
        metrics=_metrics(data, probe, config, result, weights, context.backbone),
        build_model=lambda: result.model,
        preprocess=result.preprocess,
        backbone=context.backbone,
        weights=weights,
        history=result.history,
    )


def _linear_probe(data: EmbeddedSplits, options: RunOptions) -> _Probe:
    from worker.ml.heads import train_head

    started = time.perf_counter()
    head = train_head(data.X_train, labels_of(data.train), "logreg", seed=options.seed)
    seconds = time.perf_counter() - started
    labels = [str(c) for c in head.classes]
    scores = evaluation(labels, data.val, head.predict_proba(data.X_val))
    return _Probe(head, labels, scores.accuracy, seconds)


def _finetune(
    data: EmbeddedSplits,
    probe: _Probe,
    config: FinetuneConfig,
    reporter: Reporter,
    context: ModeContext,
) -> FinetuneResult:
    """The whole network trained from the probe's start, reporting batches and epochs."""
    from worker.ml.finetune import finetune

    reporter.stage(
        "fine-tuning",
        TRAIN_SPAN[0],
        unit="steps",
        detail=f"{context.backbone} · epoch 1 of {config.epochs}",
    )
    index = {label: i for i, label in enumerate(probe.labels)}
    return finetune(
        [(e.path, index[e.label]) for e in data.train],
        [(e.path, index[e.label]) for e in data.val],
        context.backbone,
        len(probe.labels),
        config,
        weights_dir=context.settings.weights_dir,
        init_head=probe.head,
        progress=lambda done, total, epoch, epochs: reporter.items(
            done, total, *TRAIN_SPAN, detail=f"{context.backbone} · epoch {epoch} of {epochs}"
        ),
        on_epoch=reporter.record_history,
        should_stop=reporter.should_stop,
    )


def _metrics(
    data: EmbeddedSplits,
    probe: _Probe,
    config: FinetuneConfig,
    result: FinetuneResult,
    weights: WeightsUsed,
    backbone: str,
) -> RunMetrics:
    """The fine-tuned model's scores on validation (and test, when there is one)."""
    labels = probe.labels
    scores = evaluation(labels, data.val, result.val_proba)
    test = None
    if data.test:
        test = evaluation(labels, data.test, _predict(result.model, data.test, result.preprocess))
    return RunMetrics(
        **dict(scores),
        n_train=len(data.train),
        n_val=len(data.val),
        n_test=len(data.test),
        test=test,
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        batch_size=result.batch_size,
        finetune=finetune_report(config, result),
        linear_probe=LinearProbeReport(accuracy=probe.accuracy, C=probe.head.params.get("C")),
        featurized=data.featurized,
        timings={
            "featurize_s": round(data.featurize_s, 3),
            "linear_probe_s": round(probe.seconds, 3),
            "finetune_s": round(result.seconds, 3),
        },
        weights=weights,
        model=TrainedModel(mode=RunMode.FINETUNE, backbones=[backbone], head="fine-tuned network"),
    )


def finetune_report(config: FinetuneConfig, result: FinetuneResult) -> FinetuneReport:
    return FinetuneReport(
        train_layers=config.train_layers,
        last_blocks=config.last_blocks if config.train_layers == "last_blocks" else None,
        epochs_planned=config.epochs,
        stopped=result.stopped,
        learning_rate=result.learning_rate,
        layer_decay=config.layer_decay,
        label_smoothing=config.label_smoothing,
        augmentation=config.augmentation,
        batch_size_requested=result.batch_size_requested,
        out_of_memory_halvings=result.out_of_memory_halvings,
        class_balancing=result.class_balancing,
        device=result.device,
        amp=result.amp,
        trainable_params=result.trainable_params,
        total_params=result.total_params,
        train_images_per_s=round(result.train_images_per_s, 2),
        start_val_loss=result.start_val_loss,
        start_val_accuracy=result.start_val_accuracy,
    )


def _predict(model: nn.Module, examples: list[Example], preprocess: Preprocess) -> np.ndarray:
    """Probabilities of the final CPU model on ``examples`` (the test split)."""
    import torch

    from backend.inference.preprocess import load_image

    rows = []
    with torch.no_grad():
        for start in range(0, len(examples), 32):
            chunk = examples[start : start + 32]
            batch = np.stack([load_image(e.path, preprocess) for e in chunk])
            rows.append(model(torch.from_numpy(batch)).numpy())
    return np.concatenate(rows)
