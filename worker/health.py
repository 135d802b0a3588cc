"""One health check of a project: its images featurized and signed, examined, stored.

The task calls :func:`examine_project` with a project id and the generation it was sent
for; the ``health_report`` row is the source of truth (see backend/health/models.py).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from backend.config import Settings, get_settings
from backend.db import session_scope, utcnow
from backend.health.models import HealthReport
from backend.health.service import relabelled_since
from backend.images.models import Image
from backend.runs.models import Run, RunStatus
from backend.storage import ImageStore
from worker.ml.errors import MLError

log = logging.getLogger(__name__)

DEFAULT_BACKBONE = "tf_efficientnet_lite0"
HEARTBEAT_S = 5.0
PROGRESS_EVERY_S = 1.0
KEPT_ESTIMATES = 20


class _Progress:
    """Throttled progress writes and a heartbeat thread for one generation of a report."""

    def __init__(self, project_id: int, generation: int) -> None:
        self.project_id = project_id
        self.generation = generation
        self._last = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def write(self, **values: Any) -> None:
        with session_scope() as session:
            session.execute(
                update(HealthReport)
                .where(
                    HealthReport.project_id == self.project_id,
                    HealthReport.requested == self.generation,
                )
                .values(heartbeat_at=utcnow(), **values)
            )

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.write()

    def images(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S or done >= total:
            self._last = now
            self.write(images_done=done, images_total=total)


def choose_backbone(session: Any, project_id: int) -> str:
    """The backbone of the project's latest successful run (its embeddings are cached),
    else the bundled default."""
    backbone = session.scalar(
        select(Run.backbone)
        .where(Run.project_id == project_id, Run.status == RunStatus.SUCCEEDED)
        .order_by(Run.finished_at.desc(), Run.id.desc())
        .limit(1)
    )
    return backbone or DEFAULT_BACKBONE


def examine_project(project_id: int, generation: int, settings: Settings | None = None) -> str:
    """Compute generation ``generation`` of the project's report, unless it is outdated."""
    settings = settings or get_settings()
    started_at = utcnow()
    with session_scope() as session:
        row = session.scalar(select(HealthReport).where(HealthReport.project_id == project_id))
        if row is None or row.requested != generation or row.computed >= generation:
            return "skipped"  # a newer request's task will compute it, or it is done
        backbone = choose_backbone(session, project_id)
        images = session.scalars(
            select(Image).where(Image.project_id == project_id).order_by(Image.id)
        ).all()
        rows = [
            (i.id, i.sha256, i.label.name if i.label else None, i.split, i.width, i.height)
            for i in images
        ]
        row.stage, row.backbone, row.heartbeat_at = "featurizing", backbone, utcnow()
        row.images_done, row.images_total = 0, len(rows)
    try:
        with _Progress(project_id, generation) as progress:
            report = _compute(rows, backbone, settings, progress)
    except MLError as exc:
        _fail(project_id, generation, str(exc))
        return "failed"
    except Exception as exc:
        log.exception("health check of project %s crashed", project_id)
        _fail(
            project_id,
            generation,
            f"The check stopped because of an internal error ({type(exc).__name__}: {exc}). "
            "The details are in the worker's log.",
        )
        return "failed"
    _store(project_id, generation, report, started_at)
    return "ready"


def _compute(
    rows: list[tuple[int, str, str | None, str | None, int, int]],
    backbone: str,
    settings: Settings,
    progress: _Progress,
) -> dict[str, Any]:
    from worker.ml.doctor import Clock, NotExaminable, Picture, examine
    from worker.ml.features import embed_images
    from worker.ml.signatures import picture_signatures

    store = ImageStore(settings)
    timings: dict[str, Any] = {}
    started = time.perf_counter()
    embedded = embed_images(
        [(sha, store.blob_path(sha)) for _, sha, *_ in rows],
        backbone,
        cache_dir=settings.cache_dir,
        weights_dir=settings.weights_dir,
        offline=settings.hf_offline,
        progress=progress.images,
    )
    timings["featurize_s"] = round(time.perf_counter() - started, 3)
    progress.write(stage="checking")
    started = time.perf_counter()
    signatures, _ = picture_signatures(
        [(sha, store.thumbnail_path(sha)) for _, sha, *_ in rows], settings.cache_dir
    )
    timings["signatures_s"] = round(time.perf_counter() - started, 3)
    pictures = [Picture(i, label, split, w, h) for i, _, label, split, w, h in rows]
    started = time.perf_counter()
    clock = Clock()
    try:
        examination = examine(
            pictures, embedded.embeddings, signatures, embedded.preprocess.input_size, clock=clock
        )
    except NotExaminable as exc:
        raise _Unexaminable(str(exc)) from exc
    timings["examine_s"] = round(time.perf_counter() - started, 3)
    timings["examine"] = clock.to_dict()  # wall and CPU seconds of each part
    return {
        **examination.to_dict(),
        "backbone": backbone,
        "input_size": embedded.preprocess.input_size,
        "featurized": {"computed": embedded.n_computed, "cached": embedded.n_cached},
        "timings": timings,
    }


class _Unexaminable(MLError):
    """The project cannot be examined (the message says why)."""


def _fail(project_id: int, generation: int, message: str) -> None:
    with session_scope() as session:
        session.execute(
            update(HealthReport)
            .where(HealthReport.project_id == project_id, HealthReport.requested == generation)
            .values(status="failed", stage="done", error=message, heartbeat_at=utcnow())
        )


def _effect(
    session: Any, project_id: int, estimates: list[dict[str, Any]], estimate: dict[str, Any]
) -> dict[str, Any] | None:
    """Relabels since the previous report on the same backbone, and the accuracy change."""
    previous = next((e for e in reversed(estimates) if e["backbone"] == estimate["backbone"]), None)
    if previous is None:
        return None
    relabelled = relabelled_since(session, project_id, datetime.fromisoformat(previous["at"]))
    if not relabelled:
        return None
    before, after = previous["accuracy"], estimate["accuracy"]
    return {
        "relabelled": relabelled,
        "accuracy_before": before,
        "accuracy_after": after,
        "message": f"Relabelled {relabelled}, accuracy re-estimated {before:.1%} → {after:.1%}.",
    }


def _store(project_id: int, generation: int, report: dict[str, Any], started_at: datetime) -> None:
    with session_scope() as session:
        row = session.scalar(
            select(HealthReport).where(HealthReport.project_id == project_id).with_for_update()
        )
        if row is None or row.computed >= generation:
            return
        estimate = {
            "at": started_at.isoformat(),
            "backbone": report["backbone"],
            **report["estimate"],
        }
        estimates = list(row.estimates or [])
        report["effect"] = _effect(session, project_id, estimates, estimate)
        row.report = report
        row.estimates = [*estimates, estimate][-KEPT_ESTIMATES:]
        row.computed = generation
        row.computed_at = started_at
        if row.requested == generation:
            row.status, row.stage, row.error = "ready", "done", None
