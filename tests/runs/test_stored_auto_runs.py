"""Auto runs stored before Auto combined backbones still read, in the new shape."""

from __future__ import annotations

from backend.runs.schemas import AutoDecision, RunMetrics

OLD_DECISION = {
    "reason": "lite2 ranked first.",
    "candidates": [
        {"backbone": "tf_efficientnet_lite2", "score": -0.03, "cv_accuracy": 0.98, "seconds": 3.0},
        {"backbone": "resnet50", "score": None, "cv_accuracy": None, "seconds": 0.0,
         "error": "no weights"},
    ],
    "chosen": {"backbone": "tf_efficientnet_lite2", "mode": "linear", "val_accuracy": 0.95,
               "linear_val_accuracy": 0.95, "finetune_val_accuracy": None},
    "finetune": {"tried": False, "estimate_s": 60.0, "gpu": False},
    "ranking": "cross-validated accuracy",
}  # fmt: skip


def test_an_old_decision_reads_with_one_backbone_per_candidate() -> None:
    decision = AutoDecision.model_validate(OLD_DECISION)
    assert decision.chosen.backbones == ["tf_efficientnet_lite2"]
    first, broken = decision.candidates
    assert first.backbones == ["tf_efficientnet_lite2"] and first.kind == "single"
    assert first.cv_accuracy == 0.98 and first.cv_log_loss is None
    assert broken.kind is None and broken.error == "no weights"


def test_old_metrics_name_the_backbone_auto_kept_as_the_model() -> None:
    per_class = {n: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1} for n in "ab"}
    stored = {
        "accuracy": 1.0,
        "balanced_accuracy": 1.0,
        "macro_f1": 1.0,
        "log_loss": 0.0,
        "n_train": 2,
        "n_val": 2,
        "n_test": 0,
        "per_class": per_class,
        "confusion_matrix": {"labels": ["a", "b"], "matrix": [[1, 0], [0, 1]]},
        "featurized": {"computed": 2, "cached": 0, "skipped_unreadable": 0},
        "timings": {},
        "weights": {"source": "bundled", "digest": "0" * 64},
        "head": {"kind": "logreg", "params": {}, "cv_scores": {}, "class_counts": {},
                 "class_weights": {}, "imbalance_ratio": 1.0},
        "auto": {"backbone": "tf_efficientnet_lite2", "mode": "linear"},
    }  # fmt: skip
    metrics = RunMetrics.model_validate(stored)
    assert metrics.model is not None
    assert metrics.model.backbones == ["tf_efficientnet_lite2"]
    assert metrics.model.head == "logreg"
