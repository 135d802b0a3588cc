"""Simplified transfer learning: frozen backbone embeddings + a trained classifier head."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from backend.runs.models import RunMode
from backend.runs.schemas import HeadReport, RunMetrics, RunOptions, TrainedModel
from worker.modes.base import Example, ModeContext, Outcome, Reporter, evaluation, register_mode
from worker.modes.embeddings import embed_splits, labels_of

if TYPE_CHECKING:
    from torch import nn

    from worker.ml.heads import TrainedHead


@register_mode(RunMode.LINEAR)
def train_linear(
    examples: list[Example], options: RunOptions, reporter: Reporter, context: ModeContext
) -> Outcome:
    from worker.ml.heads import train_head

    data = embed_splits(examples, context, reporter)

    reporter.stage("training", 0.86, detail=f"{options.head} classifier on {context.backbone}")
    started = time.perf_counter()
    head = train_head(data.X_train, labels_of(data.train), options.head, seed=options.seed)
    train_s = time.perf_counter() - started
    labels = [str(c) for c in head.classes]

    reporter.stage("evaluating", 0.9, detail=context.backbone)
    val_proba = head.predict_proba(data.X_val)
    scores = evaluation(labels, data.val, val_proba)
    metrics = RunMetrics(
        **dict(scores),
        n_train=len(data.train),
        n_val=len(data.val),
        n_test=len(data.test),
        test=evaluation(labels, data.test, head.predict_proba(data.X_test)) if data.test else None,
        head=head_report(head),
        featurized=data.featurized,
        timings={"featurize_s": round(data.featurize_s, 3), "train_head_s": round(train_s, 3)},
        weights=data.weights,
        model=TrainedModel(mode=RunMode.LINEAR, backbones=[context.backbone], head=head.kind),
    )

    def build_model() -> nn.Module:
        from worker.ml.backbones import create_backbone
        from worker.ml.export import build_classifier

        network, _, _ = create_backbone(
            context.backbone,
            pretrained=context.pretrained,
            weights_dir=context.settings.weights_dir,
            offline=context.settings.hf_offline,
        )
        return build_classifier(network, head)

    return Outcome(
        labels=labels,
        val_examples=data.val,
        val_proba=val_proba,
        metrics=metrics,
        build_model=build_model,
        preprocess=data.embedded.preprocess,
        backbone=context.backbone,
        weights=data.weights,
        head=head,
        feature_onnx=data.embedded.feature_graph,
    )


def head_report(head: TrainedHead) -> HeadReport:
    return HeadReport(
        kind=head.kind,
        params=head.params,
        # NaN when cross-validation was impossible: null in the contract, not a number
        cv_scores={k: None if math.isnan(v) else v for k, v in head.cv_scores.items()},
        class_counts=head.class_counts,
        class_weights=head.class_weights,
        imbalance_ratio=head.imbalance_ratio,
    )
