"""How long a run would take here, from what earlier runs and health checks on this server
measured: the pace of featurizing per backbone, of fine-tuning per backbone, and the rest of
a quick run; pictures already embedded (embeddings are cached) cost nothing.

Before any run, a short measurement stands in (``request_measurement``: a worker times the
backbone on a few of the project's pictures, then a classifier fitted and exported on them),
kept in Redis per backbone for a week."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from statistics import median
from typing import Any, cast

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.config import get_settings
from backend.errors import Conflict, NotFound
from backend.health.models import HealthReport
from backend.images.models import Image
from backend.projects.models import Project
from backend.queue import broker_redis, enqueue_pace
from backend.runs.models import Run, RunMode, RunStatus
from backend.runs.schemas import EstimateOut, EstimatesOut, MeasureOut
from backend.runs.service import BrokerUnavailable
from backend.runs.zoo import ZOO, weights_availability

log = logging.getLogger(__name__)

RECENT_RUNS = 200  # the pace of this server now, not of last year's hardware
MIN_FEATURIZED = 10  # fewer computed embeddings measure the loading, not the pace
PACE_KEY = "autodl:pace:"  # + backbone: the worker's measurement (JSON)
MEASURING_KEY = "autodl:pace-measuring:"  # + backbone: a measurement is on its way
PACE_TTL_S = 7 * 24 * 3600  # this server's pace now, not last year's
MEASURING_TTL_S = 300  # a worker that died while measuring does not block the next try
MEASURE_MIN_IMAGES = 8  # two batches of pictures, of at least two labels
VERIFY_IMAGES = 16  # what a run's export check runs through the classifier (worker.artifacts)


class NothingToMeasure(Conflict):
    detail = (
        f"Measuring needs at least {MEASURE_MIN_IMAGES} labelled pictures of 2 labels or more; "
        "label some first."
    )


class UnknownBackbone(NotFound):
    detail = "No backbone of that name is in the zoo (GET /api/backbones lists them)."


class NoWeightsHere(Conflict):
    detail = (
        "This backbone's weights are not on this server yet (the first run downloads them): "
        "there is nothing to measure before then."
    )


def save_measurement(backbone: str, measured: dict[str, Any]) -> None:
    """The worker's side: keep what it measured, and say it is no longer measuring."""
    client = broker_redis()
    client.set(PACE_KEY + backbone, json.dumps(measured), ex=PACE_TTL_S)
    client.delete(MEASURING_KEY + backbone)


def measurement_failed(backbone: str) -> None:
    broker_redis().delete(MEASURING_KEY + backbone)


def _measurements(backbones: list[str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The measurements kept for ``backbones``, and those being measured now. Redis that
    does not answer means none (the estimates then come from runs alone)."""
    if not backbones:
        return {}, set()
    try:
        client = broker_redis()
        values = cast(list[bytes | None], client.mget([PACE_KEY + b for b in backbones]))
        busy = cast(list[bytes | None], client.mget([MEASURING_KEY + b for b in backbones]))
    except (redis.RedisError, RuntimeError) as exc:
        log.warning("no pace measurements: %s", exc)
        return {}, set()
    found = {b: json.loads(v) for b, v in zip(backbones, values, strict=True) if v}
    return found, {b for b, v in zip(backbones, busy, strict=True) if v}


def request_measurement(session: Session, project: Project, backbone: str) -> MeasureOut:
    """Have a worker measure ``backbone`` on a few of ``project``'s pictures, once: a kept
    measurement, or one on its way, is not asked again."""
    if backbone not in ZOO:
        raise UnknownBackbone()
    settings = get_settings()
    if weights_availability(backbone, settings.weights_dir, offline=True) == "unavailable":
        raise NoWeightsHere()
    labelled = dict(
        session.execute(
            select(Image.label_id, func.count())
            .where(Image.project_id == project.id, Image.label_id.is_not(None))
            .group_by(Image.label_id)
        ).all()
    )
    if sum(labelled.values()) < MEASURE_MIN_IMAGES or sum(n >= 2 for n in labelled.values()) < 2:
        raise NothingToMeasure()
    found, busy = _measurements([backbone])
    if backbone in found:
        return MeasureOut(backbone=backbone, status="measured")
    if backbone not in busy:
        try:
            client = broker_redis()
            if client.set(MEASURING_KEY + backbone, project.id, nx=True, ex=MEASURING_TTL_S):
                try:
                    enqueue_pace(project.id, backbone)
                except Exception:
                    client.delete(MEASURING_KEY + backbone)
                    raise
        except Exception as exc:
            log.warning("could not ask for a pace measurement: %s", exc)
            raise BrokerUnavailable(
                "The task queue (Redis) cannot be reached, so nothing can be measured now."
            ) from exc
    return MeasureOut(backbone=backbone, status="measuring")


def _measured_linear_rest(measured: dict[str, Any]) -> float:
    """The rest of a quick run (beyond featurizing), from a measurement: fitting the head,
    exporting the classifier, checking it on a few pictures and loading the graph."""
    verify_s = measured.get("verify_s")
    if verify_s is None:
        verify_s = VERIFY_IMAGES / float(measured["images_per_s"])
    return (
        float(measured.get("head_s") or 0.0)
        + float(measured.get("export_s") or 0.0)
        + float(verify_s)
        + float(measured.get("setup_s") or 0.0)
    )


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
    overhead = median(rest) if rest else None  # unknown before the first quick run
    usable = [
        b
        for b in ZOO
        if weights_availability(b, get_settings().weights_dir, offline=True) != "unavailable"
    ]
    measured, measuring = _measurements(usable)
    out: dict[str, EstimateOut] = {}
    for backbone in set(featurize) | set(finetune) | set(measured) | measuring:
        probe = measured.get(backbone)
        pace = median(featurize[backbone]) if featurize[backbone] else None
        rest_s, source = overhead, "runs"
        if pace is None and probe:
            pace, source = float(probe["images_per_s"]), "measured"
        if rest_s is None and probe:
            rest_s, source = _measured_linear_rest(probe), "measured"
        # Embeddings are cached: only pictures no check or run has embedded cost time.
        to_embed = max(0, n_images - already.get(backbone, 0))
        linear = None
        if pace and (rest_s is not None or to_embed):
            linear = to_embed / pace + (rest_s or 0.0)
        tuned = None
        if finetune[backbone]:
            # Validation passes cost about a third of a training pass.
            tuned = epochs * (n_train + n_val / 3) / median(finetune[backbone]) + (linear or 0)
        out[backbone] = EstimateOut(
            linear_s=None if linear is None else round(linear, 1),
            finetune_s=None if tuned is None else round(tuned, 1),
            runs_measured=len(featurize[backbone]) + len(finetune[backbone]),
            source=None if linear is None else source,  # type: ignore[arg-type]
            measuring=backbone in measuring and linear is None,
        )
    return EstimatesOut(images=n_images, epochs=epochs, backbones=out)
