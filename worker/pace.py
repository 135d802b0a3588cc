"""A short measurement of a backbone's pace on this server, before any run has measured it:
a few of the project's pictures through the backbone, a classifier fitted on them, exported
and checked as a run checks its model, each timed (backend/runs/estimates.py turns it into
the Train dialog's estimate)."""

from __future__ import annotations

import logging
import tempfile
import time
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path

from sqlalchemy import select

from backend.config import Settings, get_settings
from backend.db import session_scope, utcnow
from backend.images.models import Image
from backend.projects.models import Label
from backend.runs.estimates import measurement_failed, save_measurement
from backend.storage import ImageStore

log = logging.getLogger(__name__)

PROBE_IMAGES = 16  # four batches of four: one to warm up, three timed


def probe_pictures(project_id: int, settings: Settings) -> list[tuple[Path, str]]:
    """Up to PROBE_IMAGES labelled pictures of the project, taking the labels in turn."""
    with session_scope() as session:
        rows = session.execute(
            select(Image.sha256, Label.name)
            .join(Label, Label.id == Image.label_id)
            .where(Image.project_id == project_id)
            .order_by(Image.id)
        ).all()
    by_label: dict[str, list[str]] = defaultdict(list)
    for sha, label in rows:
        if len(by_label[label]) < PROBE_IMAGES:
            by_label[label].append(sha)
    store = ImageStore(settings)
    turns = zip_longest(*by_label.values())
    picked = [(sha, label) for turn in turns for sha, label in zip(turn, by_label, strict=True)]
    return [(store.blob_path(sha), label) for sha, label in picked if sha][:PROBE_IMAGES]


def measure_backbone_pace(project_id: int, backbone: str, settings: Settings | None = None) -> str:
    """Measure and keep ``backbone``'s pace; "measured", or "failed" (logged: the estimate
    then stays "not measured" until a run measures it)."""
    from backend.inference.predictor import OnnxClassifier
    from worker.ml.export import compose_classifier_onnx
    from worker.ml.features import measure_pace
    from worker.ml.heads import train_head

    settings = settings or get_settings()
    try:
        pictures = probe_pictures(project_id, settings)
        pace = measure_pace(
            [path for path, _ in pictures],
            backbone,
            cache_dir=settings.cache_dir,
            weights_dir=settings.weights_dir,
            offline=settings.hf_offline,
        )
        labels = [pictures[i][1] for i in pace.readable]
        started = time.perf_counter()
        head = train_head(pace.embeddings, labels, "logreg", seed=0)
        head_s = time.perf_counter() - started
        export_s = verify_s = None
        if pace.feature_graph is not None:
            settings.tmp_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=settings.tmp_dir) as folder:
                started = time.perf_counter()
                target = compose_classifier_onnx(
                    pace.feature_graph,
                    head,
                    pace.preprocess,
                    [str(c) for c in head.classes],
                    Path(folder) / "probe.onnx",
                )
                export_s = time.perf_counter() - started
                # As a run checks its exported file (worker.artifacts.verify_export).
                started = time.perf_counter()
                OnnxClassifier(target).predict([path for path, _ in pictures])
                verify_s = time.perf_counter() - started
    except Exception:
        log.exception("could not measure the pace of %s on project %s", backbone, project_id)
        measurement_failed(backbone)
        return "failed"
    save_measurement(
        backbone,
        {
            "images_per_s": round(pace.images_per_s, 3),
            "setup_s": None if pace.setup_s is None else round(pace.setup_s, 3),
            "head_s": round(head_s, 3),
            "export_s": None if export_s is None else round(export_s, 3),
            "verify_s": None if verify_s is None else round(verify_s, 3),
            "images": len(labels),
            "measured_at": utcnow().isoformat(),
        },
    )
    log.info("pace of %s: %.1f pictures/s", backbone, pace.images_per_s)
    return "measured"
