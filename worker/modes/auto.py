"""Auto mode: rank backbones on cached embeddings, train a linear probe on the best, and
fine-tune it only when the data, the hardware or the time budget make that worth it; keep
whichever model scores better on the validation split and say why in the run's decision.

Ranking uses cross-validated logistic-regression accuracy on the training split (the
measure the linear probe will be chosen by), with LogME (You et al., ICML 2021; see
worker/ml/transferability.py) recorded beside it and breaking ties.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter

from backend.runs.models import RunMode
from backend.runs.schemas import (
    AutoChoice,
    AutoDecision,
    CandidateScore,
    ChosenModel,
    EpochRecord,
    FinetunePlan,
    RunOptions,
)
from worker.ml.errors import Cancelled, MLError
from worker.modes.base import Example, ModeContext, Outcome, Reporter, register_mode
from worker.modes.embeddings import embed_examples, labels_of, split_arrays
from worker.modes.finetune import train_finetune
from worker.modes.linear import train_linear

RANK_SPAN = (0.02, 0.45)
FINETUNE_MIN_PER_CLASS = 100
# Seconds per training image and epoch for tf_efficientnet_lite0 at 224 px (last blocks):
# measured on the shared 2-core CPU and quoted for a mid-range GPU (docs/benchmarks.md).
# Other backbones scale with their input area.
CPU_S_PER_IMAGE = 0.12
GPU_S_PER_IMAGE = 0.004
CV_TIE = 0.005  # CV accuracies closer than this are a tie, settled by LogME
RANKING = (
    "cross-validated logistic-regression balanced accuracy on the training split; "
    "ties within 0.5 % broken by LogME (You et al., ICML 2021)"
)


class ScaledReporter:
    """A Reporter seen by a sub-step: its progress [0, 1] maps onto [lo, hi] of the run."""

    def __init__(self, reporter: Reporter, lo: float, hi: float) -> None:
        self.reporter, self.lo, self.hi = reporter, lo, hi

    def _map(self, p: float) -> float:
        return self.lo + (self.hi - self.lo) * p

    def stage(self, name: str, progress: float, *, images_total: int | None = None) -> None:
        self.reporter.stage(name, self._map(progress), images_total=images_total)

    def items(self, done: int, total: int, lo: float, hi: float, *, force: bool = False) -> None:
        self.reporter.items(done, total, self._map(lo), self._map(hi), force=force)

    def record_history(self, history: list[EpochRecord]) -> None:
        self.reporter.record_history(history)

    def should_stop(self) -> bool:
        return self.reporter.should_stop()

    def check_cancel(self) -> None:
        self.reporter.check_cancel()


def candidate_backbones(options: RunOptions, context: ModeContext) -> list[str]:
    """The options' candidates, else every zoo backbone whose weights are on this machine."""
    if options.candidates:
        return list(dict.fromkeys(options.candidates))
    from backend.runs.zoo import ZOO, local_weights, zoo_hub_weights

    weights_dir = context.settings.weights_dir
    available = [
        name for name in ZOO if local_weights(name, weights_dir, zoo_hub_weights(name)) is not None
    ]
    return available or [context.backbone]


def rank_candidates(
    examples: list[Example], names: list[str], context: ModeContext, reporter: Reporter
) -> list[CandidateScore]:
    """Score each backbone on the training split's embeddings; best first."""
    from worker.ml.heads import train_head
    from worker.ml.transferability import logme_score

    ranked: list[CandidateScore] = []
    width = (RANK_SPAN[1] - RANK_SPAN[0]) / len(names)
    for i, name in enumerate(names):
        span = (RANK_SPAN[0] + i * width, RANK_SPAN[0] + (i + 1) * width)
        started = time.perf_counter()
        try:
            kept, X, _ = embed_examples(examples, name, context, reporter, span)
        except Cancelled:
            raise
        except MLError as exc:  # e.g. no weights for it here: the others still compete
            ranked.append(CandidateScore(backbone=name, score=None, cv_accuracy=None,
                                         seconds=0.0, error=str(exc)))  # fmt: skip
            continue
        train, X_train = split_arrays(kept, X, "train")
        y = labels_of(train)
        cv = train_head(X_train, y, "logreg").cv_scores.get("logreg", math.nan)
        ranked.append(
            CandidateScore(
                backbone=name,
                score=round(logme_score(X_train, y), 4),
                cv_accuracy=None if math.isnan(cv) else round(cv, 4),
                seconds=round(time.perf_counter() - started, 2),
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


def _rank_key(c: CandidateScore) -> tuple[float, float]:
    cv = -1.0 if c.cv_accuracy is None else c.cv_accuracy
    # Quantize so that CV differences within noise fall to LogME.
    return (math.floor(cv / CV_TIE), c.score if c.score is not None else -math.inf)


def estimate_finetune_s(backbone: str, n_train: int, n_val: int, epochs: int, gpu: bool) -> float:
    """Rough seconds for ``epochs`` of fine-tuning (validation counted at a third of training)."""
    from backend.runs.zoo import get_backbone_spec

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


@dataclasses.dataclass(frozen=True)
class FinetunePlanned:
    tune: bool
    reason: str
    estimate_s: float
    gpu: bool


def plan_finetune(
    examples: list[Example], backbone: str, options: RunOptions, spent_s: float
) -> FinetunePlanned:
    """Whether to fine-tune the ranked-first backbone after its linear probe, and why."""
    import torch

    train = [e for e in examples if e.split == "train"]
    n_val = sum(e.split == "val" for e in examples)
    gpu = torch.cuda.is_available()
    estimate = estimate_finetune_s(backbone, len(train), n_val, options.epochs, gpu)
    budget = options.time_budget_s
    # Keep some of the budget for the linear probe and the export.
    budget_left = None if budget is None else budget - spent_s - 30.0
    smallest = min(Counter(labels_of(train)).values())
    tune, reason = should_finetune(smallest, gpu, estimate, options.epochs, budget_left)
    return FinetunePlanned(tune, reason, estimate, gpu)


@register_mode(RunMode.AUTO)
def train_auto(
    examples: list[Example], options: RunOptions, reporter: Reporter, context: ModeContext
) -> Outcome:
    started = time.perf_counter()
    ranked = rank_candidates(examples, candidate_backbones(options, context), context, reporter)
    rank_s = time.perf_counter() - started
    best = dataclasses.replace(context, backbone=ranked[0].backbone)
    plan = plan_finetune(examples, best.backbone, options, rank_s)

    linear_end = 0.6 if plan.tune else 0.93
    linear = train_linear(
        examples, options, ScaledReporter(reporter, RANK_SPAN[1], linear_end), best
    )
    chosen, tuned = linear, None
    if plan.tune:
        budget = options.time_budget_s
        left = None if budget is None else max(1.0, budget - (time.perf_counter() - started) - 15)
        tuned = train_finetune(
            examples,
            options.model_copy(update={"time_budget_s": left}),
            ScaledReporter(reporter, linear_end, 0.94),
            best,
        )
        if tuned.metrics.accuracy > linear.metrics.accuracy:
            chosen = tuned
    decision = decide(ranked, plan, linear, tuned, chosen)
    timings = {**chosen.metrics.timings, "rank_s": round(rank_s, 3)}
    auto = AutoChoice(backbone=best.backbone, mode=decision.chosen.mode)
    return dataclasses.replace(
        chosen,
        # The curves of a fine-tune that was tried stay visible, kept or not.
        history=tuned.history if tuned is not None else chosen.history,
        decision=decision,
        metrics=chosen.metrics.model_copy(update={"timings": timings, "auto": auto}),
    )


def decide(
    ranked: list[CandidateScore],
    plan: FinetunePlanned,
    linear: Outcome,
    tuned: Outcome | None,
    chosen: Outcome,
) -> AutoDecision:
    """The run's decision: what was ranked, what was tried, what was kept and why."""
    best = ranked[0]
    mode = RunMode.FINETUNE if chosen is tuned else RunMode.LINEAR
    linear_acc = linear.metrics.accuracy
    tuned_acc = None if tuned is None else tuned.metrics.accuracy
    comparison = ""
    if tuned_acc is not None and mode == RunMode.FINETUNE:
        comparison = (
            f" The fine-tuned model was kept: {_pct(tuned_acc)} on validation against "
            f"{_pct(linear_acc)} for the linear probe."
        )
    elif tuned_acc is not None:
        comparison = (
            f" The linear probe was kept: fine-tuning reached {_pct(tuned_acc)} on "
            f"validation, not more than its {_pct(linear_acc)}."
        )
    cv = "" if best.cv_accuracy is None else f" ({_pct(best.cv_accuracy)})"
    reason = (
        f"{best.backbone} ranked first of {len([c for c in ranked if c.error is None])} "
        f"backbones by cross-validated linear-probe accuracy{cv}; its linear probe reached "
        f"{_pct(linear_acc)} on validation. {plan.reason}{comparison}"
    )
    return AutoDecision(
        reason=reason,
        candidates=ranked,
        chosen=ChosenModel(
            backbone=best.backbone,
            mode=mode,
            val_accuracy=chosen.metrics.accuracy,
            linear_val_accuracy=linear_acc,
            finetune_val_accuracy=tuned_acc,
        ),
        finetune=FinetunePlan(tried=plan.tune, estimate_s=round(plan.estimate_s, 1), gpu=plan.gpu),
        ranking=RANKING,
    )


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"
