"""Auto mode: combine the backbones instead of guessing one, and fine-tune only when the
data, the hardware or the time budget make that worth it.

Every backbone with weights on this machine is featurized at ``ensemble.SCALE`` times its
own input size (plain and mirrored, both cached); worker/ml/ensemble.py measures
the ways of combining them (one backbone, averaged probabilities, concatenated embeddings;
with and without flip test-time augmentation) by repeated stratified cross-validation on
the training split and fits the best. A fine-tune of the strongest single backbone (at its
own input size) is tried when worth it and kept only if it beats the combined probe on
validation (the split both are reported on; the choice is made there).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from backend.runs.models import RunMode
from backend.runs.schemas import (
    AutoDecision,
    CandidateScore,
    ChosenModel,
    EnsembleMember,
    EnsembleReport,
    EpochRecord,
    FeaturizedCounts,
    FinetunePlan,
    RunMetrics,
    RunOptions,
    TrainedModel,
)
from worker.ml.errors import Cancelled, MLError, NotEnoughData
from worker.modes.base import (
    Example,
    ModeContext,
    Outcome,
    Reporter,
    evaluation,
    register_mode,
    weights_used,
)
from worker.modes.embeddings import embed_examples, labels_of, require_trained_labels
from worker.modes.finetune import train_finetune

if TYPE_CHECKING:
    from torch import nn

    from worker.ml.ensemble import Candidate, Ensemble
    from worker.ml.features import EmbeddingResult

FEATURIZE_SPAN = (0.02, 0.8)
FINETUNE_MIN_PER_CLASS = 100
# Seconds per training image and epoch for tf_efficientnet_lite0 at 224 px (last blocks):
# measured on the shared 2-core CPU and quoted for a mid-range GPU (docs/benchmarks.md).
# Other backbones scale with their input area.
CPU_S_PER_IMAGE = 0.12
GPU_S_PER_IMAGE = 0.004
RANKING = (
    "out-of-fold log loss of repeated stratified cross-validation on the training split "
    "(every C and every way of combining the backbones chosen the same way)"
)


class ScaledReporter:
    """A Reporter seen by a sub-step: its progress [0, 1] maps onto [lo, hi] of the run."""

    def __init__(self, reporter: Reporter, lo: float, hi: float) -> None:
        self.reporter, self.lo, self.hi = reporter, lo, hi

    def _map(self, p: float) -> float:
        return self.lo + (self.hi - self.lo) * p

    def stage(
        self,
        name: str,
        progress: float,
        *,
        images_total: int | None = None,
        unit: str = "images",
        detail: str | None = None,
    ) -> None:
        self.reporter.stage(
            name, self._map(progress), images_total=images_total, unit=unit, detail=detail
        )

    def items(
        self,
        done: int,
        total: int,
        lo: float,
        hi: float,
        *,
        force: bool = False,
        detail: str | None = None,
    ) -> None:
        self.reporter.items(done, total, self._map(lo), self._map(hi), force=force, detail=detail)

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


@dataclasses.dataclass
class Embedded:
    """Each usable backbone's embeddings of the run's images, plain and mirrored."""

    examples: list[Example]  # the images every backbone could read
    plain: dict[str, np.ndarray]
    flipped: dict[str, np.ndarray]
    results: dict[str, EmbeddingResult]
    errors: dict[str, str]
    seconds: dict[str, float]

    def rows(
        self, split: str
    ) -> tuple[list[Example], dict[str, np.ndarray], dict[str, np.ndarray]]:
        idx = [i for i, e in enumerate(self.examples) if e.split == split]
        return (
            [self.examples[i] for i in idx],
            {b: X[idx] for b, X in self.plain.items()},
            {b: X[idx] for b, X in self.flipped.items()},
        )


def embed_candidates(
    examples: list[Example], names: list[str], context: ModeContext, reporter: Reporter
) -> Embedded:
    """Featurize (cache first) with every candidate backbone, both views, at ``SCALE``
    times its input size; a backbone that cannot be used here (no weights) is recorded with
    why, and the others go on."""
    from worker.ml.ensemble import SCALE

    width = (FEATURIZE_SPAN[1] - FEATURIZE_SPAN[0]) / (2 * len(names))
    kept: dict[str, tuple[list[Example], np.ndarray, np.ndarray, EmbeddingResult]] = {}
    errors: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for i, name in enumerate(names):
        started = time.perf_counter()
        lo = FEATURIZE_SPAN[0] + 2 * i * width
        try:
            which = f"{name} (backbone {i + 1} of {len(names)})"
            ex, X, result = embed_examples(
                examples, name, context, reporter, (lo, lo + width), scale=SCALE, detail=which
            )
            ex_f, X_f, _ = embed_examples(
                examples,
                name,
                context,
                reporter,
                (lo + width, lo + 2 * width),
                hflip=True,
                scale=SCALE,
                detail=f"{which}, mirrored",
            )
        except Cancelled:
            raise
        except MLError as exc:  # e.g. no weights for it here: the others still compete
            errors[name] = str(exc)
            continue
        if [e.sha256 for e in ex_f] != [e.sha256 for e in ex]:
            ex_f_index = {e.sha256: row for row, e in enumerate(ex_f)}
            X_f = np.stack([X_f[ex_f_index[e.sha256]] for e in ex])
        kept[name] = (ex, X, X_f, result)
        seconds[name] = round(time.perf_counter() - started, 2)
        reporter.check_cancel()
    if not kept:
        raise MLError(
            "No candidate backbone could be used: "
            + "; ".join(f"{name}: {why}" for name, why in errors.items())
        )
    readable = set.intersection(*({e.sha256 for e in ex} for ex, _, _, _ in kept.values()))
    common = [e for e in examples if e.sha256 in readable]
    plain, flipped = {}, {}
    for name, (ex, X, X_f, _) in kept.items():
        row = {e.sha256: r for r, e in enumerate(ex)}
        idx = [row[e.sha256] for e in common]
        plain[name], flipped[name] = X[idx], X_f[idx]
    results = {name: v[3] for name, v in kept.items()}
    return Embedded(common, plain, flipped, results, errors, seconds)


@register_mode(RunMode.AUTO)
def train_auto(
    examples: list[Example], options: RunOptions, reporter: Reporter, context: ModeContext
) -> Outcome:
    from worker.ml.ensemble import fit_ensemble

    started = time.perf_counter()
    names = candidate_backbones(options, context)
    data = embed_candidates(examples, names, context, reporter)
    featurize_s = time.perf_counter() - started
    train, plain_tr, flip_tr = data.rows("train")
    val, plain_va, flip_va = data.rows("val")
    test, plain_te, flip_te = data.rows("test")
    require_trained_labels(train, val)

    reporter.stage("training", FEATURIZE_SPAN[1])
    fit_started = time.perf_counter()
    try:
        ensemble = fit_ensemble(plain_tr, labels_of(train), flip_tr, seed=options.seed)
    except ValueError as exc:
        raise NotEnoughData(f"Auto cannot cross-validate these images: {exc}.") from exc
    fit_s = time.perf_counter() - fit_started
    reporter.check_cancel()
    labels = ensemble.classes
    reporter.stage("evaluating", 0.88)
    val_proba = ensemble.predict_proba(plain_va, flip_va)
    scores = evaluation(labels, val, val_proba)
    used = ensemble.backbones
    model = TrainedModel(mode=RunMode.LINEAR, backbones=used, head=combiner_words(ensemble))
    weights = weights_used(data.results[used[0]].weights)
    featurized = FeaturizedCounts(
        computed=sum(r.n_computed for r in data.results.values()),
        cached=sum(r.n_cached for r in data.results.values()),
        skipped_unreadable=len(examples) - len(data.examples),
    )
    metrics = RunMetrics(
        **dict(scores),
        n_train=len(train),
        n_val=len(val),
        n_test=len(test),
        test=evaluation(labels, test, ensemble.predict_proba(plain_te, flip_te)) if test else None,
        featurized=featurized,
        timings={
            "featurize_s": round(featurize_s, 3),
            "combine_s": round(fit_s, 3),
            **{f"featurize_{b}_s": s for b, s in data.seconds.items()},
        },
        weights=weights,
        model=model,
        ensemble=ensemble_report(ensemble),
    )
    linear = Outcome(
        labels=labels,
        val_examples=val,
        val_proba=val_proba,
        metrics=metrics,
        build_model=lambda: build_ensemble_model(ensemble, data, options, context),
        preprocess=data.results[used[0]].preprocess,
        backbone=used[0],
        weights=weights,
        ensemble=ensemble,
        ensemble_inputs=[
            (b, data.results[b].preprocess, data.results[b].feature_graph) for b in used
        ],
    )

    strongest = strongest_single(ensemble)
    plan = plan_finetune(examples, strongest, options, time.perf_counter() - started)
    chosen, tuned = linear, None
    if plan.tune:
        budget = options.time_budget_s
        left = None if budget is None else max(1.0, budget - (time.perf_counter() - started) - 15)
        tuned = train_finetune(
            examples,
            options.model_copy(update={"time_budget_s": left}),
            ScaledReporter(reporter, 0.9, 0.97),
            dataclasses.replace(context, backbone=strongest),
        )
        if tuned.metrics.accuracy > linear.metrics.accuracy:
            tuned_model = TrainedModel(
                mode=RunMode.FINETUNE, backbones=[strongest], head="fine-tuned network"
            )
            chosen = dataclasses.replace(
                tuned, metrics=tuned.metrics.model_copy(update={"model": tuned_model})
            )
    decision = decide(ensemble, data, plan, linear, tuned, chosen, strongest)
    timings = {**chosen.metrics.timings, "auto_s": round(time.perf_counter() - started, 3)}
    return dataclasses.replace(
        chosen,
        # The curves of a fine-tune that was tried stay visible, kept or not.
        history=tuned.history if tuned is not None else chosen.history,
        decision=decision,
        metrics=chosen.metrics.model_copy(update={"timings": timings}),
    )


def combiner_words(ensemble: Ensemble) -> str:
    """The ensemble's classifier in a person's words."""
    flip = ", flip-averaged" if ensemble.flip else ""
    n = len(ensemble.backbones)
    return {
        "single": f"logistic regression{flip}",
        "average": f"{n} logistic regressions, probabilities averaged{flip}",
        "concat": f"logistic regression on {n} concatenated embeddings{flip}",
    }[ensemble.kind]


def ensemble_report(ensemble: Ensemble) -> EnsembleReport:
    return EnsembleReport(
        kind=ensemble.kind,
        flip=ensemble.flip,
        members=[
            EnsembleMember(
                backbones=list(m.backbones), weight=round(m.weight, 4), C=m.head.params["C"]
            )
            for m in ensemble.members
        ],
        folds=ensemble.folds,
        repeats=ensemble.repeats,
    )


def strongest_single(ensemble: Ensemble) -> str:
    """The backbone whose own probe cross-validated best (the one a fine-tune would start
    from)."""
    singles = [c for c in ensemble.candidates if c.kind == "single"]
    return min(singles, key=lambda c: c.cv_log_loss).backbones[0]


def build_ensemble_model(
    ensemble: Ensemble, data: Embedded, options: RunOptions, context: ModeContext
) -> nn.Module:
    """The image(s) -> probabilities network of the ensemble (for TorchScript)."""
    from worker.ml.backbones import create_backbone
    from worker.ml.export import build_ensemble_classifier

    nets = [
        create_backbone(
            b,
            pretrained=options.pretrained,
            weights_dir=context.settings.weights_dir,
            offline=context.settings.hf_offline,
        )[0]
        for b in ensemble.backbones
    ]
    return build_ensemble_classifier(nets, ensemble)


def candidate_rows(ensemble: Ensemble, data: Embedded) -> list[CandidateScore]:
    """The decision table: every candidate measured, best first, then unusable backbones."""

    def row(c: Candidate) -> CandidateScore:
        return CandidateScore(
            candidate=c.name,
            kind=c.kind,
            backbones=list(c.backbones),
            flip=c.flip,
            cv_accuracy=round(c.cv_accuracy, 4),
            cv_log_loss=round(c.cv_log_loss, 4),
            seconds=round(c.seconds, 2),
            kept=c is ensemble.chosen,
        )

    rows = [row(c) for c in sorted(ensemble.candidates, key=lambda c: c.cv_log_loss)]
    for name, why in data.errors.items():
        rows.append(
            CandidateScore(
                candidate=name,
                kind=None,
                backbones=[name],
                flip=False,
                cv_accuracy=None,
                cv_log_loss=None,
                seconds=0.0,
                error=why,
            )
        )
    return rows


def decide(
    ensemble: Ensemble,
    data: Embedded,
    plan: FinetunePlanned,
    linear: Outcome,
    tuned: Outcome | None,
    chosen: Outcome,
    strongest: str,
) -> AutoDecision:
    """The run's decision: what was measured, what was tried, what was kept and why."""
    from worker.ml.ensemble import describe

    mode = RunMode.FINETUNE if chosen is not linear else RunMode.LINEAR
    linear_acc = linear.metrics.accuracy
    tuned_acc = None if tuned is None else tuned.metrics.accuracy
    comparison = ""
    if tuned_acc is not None and mode == RunMode.FINETUNE:
        comparison = (
            f" The fine-tuned {strongest} was kept: {_pct(tuned_acc)} on validation against "
            f"{_pct(linear_acc)} for the combined probe (both measured on the validation "
            "split, which made the choice)."
        )
    elif tuned_acc is not None:
        comparison = (
            f" The combined probe was kept: fine-tuning {strongest} reached {_pct(tuned_acc)} "
            f"on validation, not more than its {_pct(linear_acc)}."
        )
    singles = [c for c in ensemble.candidates if c.kind == "single" and c.flip == ensemble.flip]
    best_single = min(singles, key=lambda c: c.cv_log_loss) if singles else ensemble.chosen
    n_usable = len(data.plain)
    reason = (
        f"{len(ensemble.candidates)} ways of using {n_usable} backbone"
        f"{'s' if n_usable != 1 else ''} were cross-validated on the training split "
        f"({ensemble.repeats} x {ensemble.folds}-fold); kept {describe(ensemble.chosen)} "
        f"(best single backbone: {describe(best_single)}). It reached {_pct(linear_acc)} on "
        f"validation. {plan.reason}{comparison}"
    )
    backbones = [strongest] if mode == RunMode.FINETUNE else ensemble.backbones
    return AutoDecision(
        reason=reason,
        candidates=candidate_rows(ensemble, data),
        chosen=ChosenModel(
            backbones=backbones,
            mode=mode,
            combiner="fine-tuned network" if mode == RunMode.FINETUNE else ensemble.chosen.name,
            val_accuracy=chosen.metrics.accuracy,
            linear_val_accuracy=linear_acc,
            finetune_val_accuracy=tuned_acc,
        ),
        finetune=FinetunePlan(tried=plan.tune, estimate_s=round(plan.estimate_s, 1), gpu=plan.gpu),
        ranking=RANKING,
    )


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"
