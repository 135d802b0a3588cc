"""Auto mode: rank backbones on cached embeddings, train a linear probe on the best, and
fine-tune it only when the data, the hardware or the time budget make that worth it; keep
whichever model scores better on the validation split and say why in the run's decision.

Ranking uses cross-validated logistic-regression accuracy on the training split (the
measure the linear probe will be chosen by), with LogME (You et al., ICML 2021; see
worker/ml/transferability.py) recorded beside it and breaking ties.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from backend.config import Settings
from worker.linear import embed_examples, split_arrays
from worker.ml.errors import Cancelled, MLError
from worker.pipeline import Example, Outcome
from worker.progress import RunReporter

RANK_SPAN = (0.02, 0.45)
FINETUNE_MIN_PER_CLASS = 100
# Seconds per training image and epoch for tf_efficientnet_lite0 at 224 px (last blocks):
# measured on the shared 2-core CPU and quoted for a mid-range GPU (docs/benchmarks.md).
# Other backbones scale with their input area.
CPU_S_PER_IMAGE = 0.12
GPU_S_PER_IMAGE = 0.004
CV_TIE = 0.005  # CV accuracies closer than this are a tie, settled by LogME


class ScaledReporter:
    """A RunReporter seen by a sub-step: its progress [0, 1] maps onto [lo, hi] of the run."""

    def __init__(self, reporter: RunReporter, lo: float, hi: float) -> None:
        self.reporter, self.lo, self.hi = reporter, lo, hi

    def _map(self, p: float) -> float:
        return self.lo + (self.hi - self.lo) * p

    def stage(self, name: str, progress: float, **extra: Any) -> None:
        self.reporter.stage(name, self._map(progress), **extra)

    def items(self, done: int, total: int, lo: float, hi: float, force: bool = False) -> None:
        self.reporter.items(done, total, self._map(lo), self._map(hi), force)

    def record(self, **values: Any) -> None:
        self.reporter.record(**values)

    def should_stop(self) -> bool:
        return self.reporter.should_stop()

    def check_cancel(self) -> None:
        self.reporter.check_cancel()


@dataclass
class Candidate:
    backbone: str
    score: float | None  # LogME
    cv_accuracy: float | None
    seconds: float
    error: str | None = None


def candidate_backbones(options: dict[str, Any], backbone: str, settings: Settings) -> list[str]:
    """The options' candidates, else every zoo backbone whose weights are on this machine."""
    if options.get("candidates"):
        return list(dict.fromkeys(options["candidates"]))
    from backend.runs.zoo import ZOO, weights_availability

    available = [
        name
        for name in ZOO
        if weights_availability(name, settings.weights_dir, offline=True) in ("bundled", "cached")
    ]
    return available or [backbone]


def rank_candidates(
    examples: list[Example], names: list[str], settings: Settings, reporter: RunReporter
) -> list[Candidate]:
    """Score each backbone on the training split's embeddings; best first."""
    from worker.ml.heads import train_head
    from worker.ml.transferability import logme_score

    ranked: list[Candidate] = []
    width = (RANK_SPAN[1] - RANK_SPAN[0]) / len(names)
    for i, name in enumerate(names):
        span = (RANK_SPAN[0] + i * width, RANK_SPAN[0] + (i + 1) * width)
        started = time.perf_counter()
        try:
            kept, X, _ = embed_examples(examples, name, settings, reporter, span)
        except Cancelled:
            raise
        except MLError as exc:  # e.g. no weights for it here: the others still compete
            ranked.append(Candidate(name, None, None, 0.0, str(exc)))
            continue
        train_ex, X_train = split_arrays(kept, X, "train")
        y = [e.label for e in train_ex]
        head = train_head(X_train, y, "logreg")
        cv = head.cv_scores.get("logreg", float("nan"))
        ranked.append(
            Candidate(
                name,
                round(logme_score(X_train, y), 4),
                None if math.isnan(cv) else round(cv, 4),
                round(time.perf_counter() - started, 2),
            )
        )
        reporter.check_cancel()
    usable = [c for c in ranked if c.error is None]
    if not usable:
        raise MLError(
            "No candidate backbone could be used: "
            + "; ".join(f"{c.backbone}: {c.error}" for c in ranked)
        )
    return sorted(usable, key=_rank_key, reverse=True) + [c for c in ranked if c.error]


def _rank_key(c: Candidate) -> tuple[float, float]:
    cv = -1.0 if c.cv_accuracy is None else c.cv_accuracy
    # Quantize so that CV differences within noise fall to LogME.
    return (math.floor(cv / CV_TIE), c.score if c.score is not None else -math.inf)


def estimate_finetune_s(backbone: str, n_train: int, n_val: int, epochs: int, gpu: bool) -> float:
    """Rough seconds for ``epochs`` of fine-tuning (validation counted at a third of training)."""
    from worker.ml.backbones import get_backbone_spec

    spec = get_backbone_spec(backbone)
    area = ((spec.input_size if spec else 224) / 224) ** 2
    per_image = (GPU_S_PER_IMAGE if gpu else CPU_S_PER_IMAGE) * area
    return epochs * (n_train + n_val / 3) * per_image


def should_finetune(
    min_per_class: int, gpu: bool, estimate_s: float, epochs: int, budget_left_s: float | None
) -> tuple[bool, str]:
    """Whether fine-tuning is worth trying, and the reason in a person's words."""
    minutes = f"about {max(1, round(estimate_s / 60))} min"
    if budget_left_s is not None and estimate_s / epochs > budget_left_s:
        return False, (
            f"Fine-tuning was skipped: the time budget leaves {budget_left_s:.0f} s and one epoch "
            f"would take about {estimate_s / epochs:.0f} s."
        )
    if gpu and min_per_class >= FINETUNE_MIN_PER_CLASS:
        return True, (
            f"Fine-tuning was tried because every label has at least {FINETUNE_MIN_PER_CLASS} "
            f"training images and a GPU is available ({minutes})."
        )
    if budget_left_s is not None and estimate_s <= budget_left_s:
        return True, f"Fine-tuning was tried because the time budget allows it ({minutes})."
    why = []
    if min_per_class < FINETUNE_MIN_PER_CLASS:
        why.append(
            f"the smallest label has {min_per_class} training images "
            f"(fine-tuning pays off from about {FINETUNE_MIN_PER_CLASS})"
        )
    if not gpu:
        why.append(f"this worker has no GPU (on its CPU it would take {minutes})")
    return False, "Fine-tuning was skipped: " + " and ".join(why) + (
        "." if budget_left_s is None else "; a larger time budget would allow it."
    )


def train_auto(
    examples: list[Example],
    backbone: str,
    options: dict[str, Any],
    settings: Settings,
    reporter: RunReporter,
) -> Outcome:
    import torch

    from worker.finetune_run import train_finetune
    from worker.linear import train_linear

    started = time.perf_counter()
    ranked = rank_candidates(
        examples, candidate_backbones(options, backbone, settings), settings, reporter
    )
    rank_s = time.perf_counter() - started
    best = ranked[0]

    train_ex = [e for e in examples if e.split == "train"]
    n_val = sum(e.split == "val" for e in examples)
    counts: dict[str, int] = {}
    for e in train_ex:
        counts[e.label] = counts.get(e.label, 0) + 1
    gpu = torch.cuda.is_available()
    epochs = int(options.get("epochs", 5))
    estimate = estimate_finetune_s(best.backbone, len(train_ex), n_val, epochs, gpu)
    budget = options.get("time_budget_s")
    # Keep some of the budget for the linear probe and the export.
    budget_left = None if budget is None else budget - rank_s - 30.0
    tune, tune_reason = should_finetune(min(counts.values()), gpu, estimate, epochs, budget_left)

    linear_end = 0.6 if tune else 0.93
    linear = train_linear(
        examples,
        best.backbone,
        options,
        settings,
        ScaledReporter(reporter, RANK_SPAN[1], linear_end),  # type: ignore[arg-type]
    )
    linear_acc = float(linear.metrics["accuracy"])
    chosen, finetune_acc = linear, None
    comparison = ""
    if tune:
        left = None if budget is None else max(1.0, budget - (time.perf_counter() - started) - 15)
        tuned = train_finetune(
            examples,
            best.backbone,
            options,
            settings,
            ScaledReporter(reporter, linear_end, 0.94),  # type: ignore[arg-type]
            time_budget_s=left,
        )
        finetune_acc = float(tuned.metrics["accuracy"])
        if finetune_acc > linear_acc:
            chosen = tuned
            comparison = (
                f" The fine-tuned model was kept: {_pct(finetune_acc)} on validation against "
                f"{_pct(linear_acc)} for the linear probe."
            )
        else:
            chosen.history = tuned.history
            comparison = (
                f" The linear probe was kept: fine-tuning reached {_pct(finetune_acc)} on "
                f"validation, not more than its {_pct(linear_acc)}."
            )
    mode = "finetune" if chosen is not linear else "linear"
    reason = (
        f"{best.backbone} ranked first of {len([c for c in ranked if c.error is None])} "
        f"backbones by cross-validated linear-probe accuracy"
        f"{'' if best.cv_accuracy is None else f' ({_pct(best.cv_accuracy)})'}; "
        f"its linear probe reached {_pct(linear_acc)} on validation. {tune_reason}{comparison}"
    )
    chosen.decision = {
        "reason": reason,
        "candidates": [
            {k: v for k, v in asdict(c).items() if k != "error" or v is not None} for c in ranked
        ],
        "chosen": {
            "backbone": best.backbone,
            "mode": mode,
            "val_accuracy": float(chosen.metrics["accuracy"]),
            "linear_val_accuracy": linear_acc,
            "finetune_val_accuracy": finetune_acc,
        },
        "finetune": {"tried": tune, "estimate_s": round(estimate, 1), "gpu": gpu},
        "ranking": "cross-validated logistic-regression balanced accuracy on the training split; "
        "ties within 0.5 % broken by LogME (You et al., ICML 2021)",
    }
    chosen.metrics["timings"]["rank_s"] = round(rank_s, 3)
    chosen.metrics["auto"] = {"backbone": best.backbone, "mode": mode}
    return chosen


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"
