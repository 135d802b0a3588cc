"""Whole-model transfer as a run: linear-probe start, fine-tuning, the same outputs as linear."""

from __future__ import annotations

import time
from typing import Any

from backend.config import Settings
from worker.linear import embed_splits
from worker.ml.finetune import FinetuneConfig
from worker.pipeline import Example, Outcome, evaluation
from worker.progress import RunReporter

PROBE_SPAN = (0.02, 0.15)
TRAIN_SPAN = (0.16, 0.93)


def finetune_config(options: dict[str, Any], time_budget_s: float | None = None) -> FinetuneConfig:
    """The run's options as a FinetuneConfig (a budget given here overrides the options')."""
    budget = time_budget_s if time_budget_s is not None else options.get("time_budget_s")
    return FinetuneConfig(
        train_layers=options.get("train_layers", "last_blocks"),
        last_blocks=int(options.get("last_blocks", 2)),
        epochs=int(options.get("epochs", 5)),
        time_budget_s=budget,
        batch_size=options.get("batch_size"),
        learning_rate=options.get("learning_rate"),
        layer_decay=options.get("layer_decay"),
        label_smoothing=float(options.get("label_smoothing", 0.1)),
        augmentation=options.get("augmentation", "light"),
        seed=int(options.get("seed", 0)),
        pretrained=bool(options.get("pretrained", True)),
    )


def train_finetune(
    examples: list[Example],
    backbone: str,
    options: dict[str, Any],
    settings: Settings,
    reporter: RunReporter,
    *,
    time_budget_s: float | None = None,
) -> Outcome:
    from worker.ml.finetune import finetune
    from worker.ml.heads import train_head

    # Cached embeddings give a linear probe in seconds: the classifier starts from it.
    data = embed_splits(examples, backbone, settings, reporter, PROBE_SPAN)
    train_ex, X_train, val_ex, X_val = data.train, data.X_train, data.val, data.X_val
    test_ex, embedded, featurize_s = data.test, data.embedded, data.featurize_s
    started = time.perf_counter()
    probe = train_head(X_train, [e.label for e in train_ex], "logreg", seed=options.get("seed", 0))
    probe_s = time.perf_counter() - started
    labels = [str(c) for c in probe.classes]
    probe_metrics = evaluation(labels, val_ex, probe.predict_proba(X_val))

    config = finetune_config(options, time_budget_s)
    reporter.stage("fine-tuning", TRAIN_SPAN[0])
    index = {label: i for i, label in enumerate(labels)}
    result = finetune(
        [(e.path, index[e.label]) for e in train_ex],
        [(e.path, index[e.label]) for e in val_ex],
        backbone,
        len(labels),
        config,
        weights_dir=settings.weights_dir,
        init_head=probe,
        progress=lambda done, total: reporter.items(done, total, *TRAIN_SPAN),
        on_epoch=lambda history: reporter.record(history=history),
        should_stop=reporter.should_stop,
    )

    reporter.stage("evaluating", 0.94)
    metrics = evaluation(labels, val_ex, result.val_proba)
    if test_ex:
        metrics["test"] = evaluation(
            labels, test_ex, _predict(result.model, test_ex, result.preprocess)
        )
    weights = {"source": result.weights.source, "digest": result.weights.digest}
    metrics.update(
        n_train=len(train_ex),
        n_val=len(val_ex),
        n_test=len(test_ex),
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        batch_size=result.batch_size,
        finetune={
            "train_layers": config.train_layers,
            "last_blocks": config.last_blocks if config.train_layers == "last_blocks" else None,
            "epochs_planned": config.epochs,
            "stopped": result.stopped,
            "learning_rate": result.learning_rate,
            "layer_decay": config.layer_decay,
            "label_smoothing": config.label_smoothing,
            "augmentation": config.augmentation,
            "batch_size_requested": result.batch_size_requested,
            "out_of_memory_halvings": result.out_of_memory_halvings,
            "class_balancing": result.class_balancing,
            "device": result.device,
            "amp": result.amp,
            "trainable_params": result.trainable_params,
            "total_params": result.total_params,
            "train_images_per_s": round(result.train_images_per_s, 2),
            "start_val_loss": result.start_val_loss,
            "start_val_accuracy": result.start_val_accuracy,
        },
        linear_probe={"accuracy": probe_metrics["accuracy"], "C": probe.params.get("C")},
        featurized={
            "computed": embedded.n_computed,
            "cached": embedded.n_cached,
            "skipped_unreadable": len(getattr(embedded, "failed", ()) or ()),
        },
        timings={
            "featurize_s": round(featurize_s, 3),
            "linear_probe_s": round(probe_s, 3),
            "finetune_s": round(result.seconds, 3),
        },
        weights=weights,
    )
    return Outcome(
        labels=labels,
        val_proba=result.val_proba,
        val_examples=val_ex,
        metrics=metrics,
        build_model=lambda: result.model,
        preprocess=result.preprocess,
        backbone=backbone,
        weights=weights,
        history=result.history,
    )


def _predict(model: Any, examples: list[Example], preprocess: Any) -> Any:
    """Probabilities of the final CPU model on ``examples`` (the test split)."""
    import numpy as np
    import torch

    from backend.inference.preprocess import load_image

    rows = []
    with torch.no_grad():
        for start in range(0, len(examples), 32):
            chunk = examples[start : start + 32]
            batch = np.stack([load_image(e.path, preprocess) for e in chunk])
            rows.append(model(torch.from_numpy(batch)).numpy())
    return np.concatenate(rows)
