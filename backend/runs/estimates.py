"""How long a run would take here, from what earlier runs and health checks on this server
measured: the pace of featurizing per backbone, of fine-tuning per backbone, and the rest of
a quick run; pictures already embedded (embeddings are cached) cost nothing."""

from __future__ import annotations

from collections import defaultdict
from statistics import median
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.health.models import HealthReport
from backend.images.models import Image
from backend.projects.models import Project
from backend.runs.models import Run, RunMode, RunStatus
from backend.runs.schemas import EstimateOut, EstimatesOut

RECENT_RUNS = 200  # the pace of this server now, not of last year's hardware
MIN_FEATURIZED = 10  # fewer computed embeddings measure the loading, not the pace


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None


def estimates(session: Session, project: Project, epochs: int) -> EstimatesOut:
    """Seconds a quick run and a fine-tune of ``epochs`` would take on ``project``'s images,
    per backbone that has been measured on this server."""
    rows = session.execute(
        select(Run.backbone, Run.mode, Run.metrics, Run.started_at, Run.finished_at)
        .where(Run.status == RunStatus.SUCCEEDED)
        .order_by(Run.id.desc())
        .limit(RECENT_RUNS)
    ).all()
    featurize: dict[str, list[float]] = defaultdict(list)
    finetune: dict[str, list[float]] = defaultdict(list)
    rest: list[float] = []
    for backbone, mode, metrics, started, finished in rows:
        m = metrics or {}
        computed = (m.get("featurized") or {}).get("computed", 0)
        featurize_s = _number((m.get("timings") or {}).get("featurize_s"))
        if featurize_s and computed >= MIN_FEATURIZED:
            featurize[backbone].append(computed / featurize_s)
        if pace := _number((m.get("finetune") or {}).get("train_images_per_s")):
            finetune[backbone].append(pace)
        if mode == RunMode.LINEAR and featurize_s and started and finished:
            rest.append(max(0.0, (finished - started).total_seconds() - featurize_s))
    # The data doctor featurizes every project's pictures too (often before any run does).
    reports = session.execute(
        select(HealthReport.project_id, HealthReport.report)
        .where(HealthReport.report.is_not(None))
        .order_by(HealthReport.id.desc())
        .limit(RECENT_RUNS)
    ).all()
    already: dict[str, int] = {}  # backbone -> this project's pictures it has embedded
    for project_id, report in reports:
        backbone = report.get("backbone")
        counts = report.get("featurized") or {}
        featurize_s = _number((report.get("timings") or {}).get("featurize_s"))
        if not isinstance(backbone, str):
            continue
        if featurize_s and counts.get("computed", 0) >= MIN_FEATURIZED:
            featurize[backbone].append(counts["computed"] / featurize_s)
        if project_id == project.id:
            already[backbone] = counts.get("computed", 0) + counts.get("cached", 0)
    counts = dict(
        session.execute(
            select(Image.split, func.count())
            .where(Image.project_id == project.id, Image.label_id.is_not(None))
            .group_by(Image.split)
        ).all()
    )
    n_images = sum(counts.values())
    n_val = counts.get("val", 0) or round(0.2 * n_images)
    n_train = n_images - n_val - counts.get("test", 0)
    overhead = median(rest) if rest else 0.0  # unknown before the first quick run
    out: dict[str, EstimateOut] = {}
    for backbone in set(featurize) | set(finetune):
        linear = None
        # Embeddings are cached: only pictures no check or run has embedded cost time; the
        # rest of a quick run (training, export) is known once one has run here.
        to_embed = max(0, n_images - already.get(backbone, 0))
        if featurize[backbone] and (rest or to_embed):
            linear = to_embed / median(featurize[backbone]) + overhead
        tuned = None
        if finetune[backbone]:
            # Validation passes cost about a third of a training pass.
            tuned = epochs * (n_train + n_val / 3) / median(finetune[backbone]) + (linear or 0)
        out[backbone] = EstimateOut(
            linear_s=None if linear is None else round(linear, 1),
            finetune_s=None if tuned is None else round(tuned, 1),
            runs_measured=len(featurize[backbone]) + len(finetune[backbone]),
        )
    return EstimatesOut(images=n_images, epochs=epochs, backbones=out)
