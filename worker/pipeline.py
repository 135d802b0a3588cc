"""One training run from its database row to a stored, verified model.

Tasks call :func:`execute_run` with an id. This module owns the run's life cycle (claim,
data, the mode's strategy, final state) and changes the row only through
``backend.runs.transitions``; the strategies live in ``worker/modes`` and the model files
in ``worker/artifacts.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from typing import Literal

import numpy as np
from sqlalchemy import delete, select, update

from backend.config import Settings, get_settings
from backend.db import session_scope
from backend.images.models import Image
from backend.logs import run_context
from backend.projects.models import Label
from backend.runs import transitions
from backend.runs.models import Artifact, Prediction, Run
from backend.runs.schemas import RunMetrics, RunOptions
from backend.runs.transitions import Lease, LeaseLost
from backend.storage import ImageStore
from worker.artifacts import ArtifactPaths, export_extra_artifacts, export_onnx_artifact
from worker.ml.errors import Cancelled, MLError, NotEnoughData
from worker.ml.evaluate import check_trainable, stratified_split
from worker.modes import get_mode
from worker.modes.base import Example, ModeContext, Outcome
from worker.modes.embeddings import measured_reason, runtimes_used
from worker.progress import RunReporter

log = logging.getLogger(__name__)

Execution = Literal["succeeded", "failed", "cancelled", "skipped"]


# ---------------------------------------------------------------- life cycle


def execute_run(run_id: int, worker: str | None = None) -> Execution:
    """Train ``run_id`` unless it is finished, cancelled or owned by a live worker.

    ``worker`` is the Celery worker's unique name (stored in ``run.worker``)."""
    settings = get_settings()
    with run_context(run_id):
        with session_scope() as session:
            lease = transitions.claim(
                session,
                run_id,
                worker=worker or f"{os.getpid()}@{socket.gethostname()}",
                stale_after_s=settings.worker_heartbeat_timeout_s,
            )
        if lease is None:
            log.info("run %s is not this worker's to train (finished, or claimed)", run_id)
            return "skipped"
        log.info("training run %s", run_id)
        outcome = _execute(lease, settings)
        log.info("run %s %s", run_id, outcome)
        return outcome


def _execute(lease: Lease, settings: Settings) -> Execution:
    run_id = lease.run_id
    with RunReporter(lease) as reporter:
        try:
            train(lease, settings, reporter)
        except Cancelled:
            with session_scope() as session:
                transitions.acknowledge_cancel(session, lease)
            return "cancelled"
        except LeaseLost:
            log.warning("run %s was taken from this worker before it finished", run_id)
            return "skipped"
        except MLError as exc:
            with session_scope() as session:
                transitions.fail(session, lease, str(exc))
            return "failed"
        except Exception as exc:
            log.exception("run %s crashed", run_id)
            with session_scope() as session:
                transitions.fail(
                    session,
                    lease,
                    f"Training stopped because of an internal error ({type(exc).__name__}: "
                    f"{exc}). The details are in the worker's log.",
                )
            return "failed"
    return "succeeded"


def train(lease: Lease, settings: Settings, reporter: RunReporter) -> None:
    """Load the run's images, train them with its mode's strategy, store the model."""
    with session_scope() as session:
        run = session.get(Run, lease.run_id)
        assert run is not None
        mode, backbone = run.mode, run.backbone
        options = RunOptions.model_validate(run.options)
    strategy = get_mode(mode)
    examples = load_examples(lease.run_id, options, settings)
    context = ModeContext(backbone, settings, options.pretrained)
    outcome = strategy(examples, options, reporter, context)
    runtimes = runtimes_used(context)
    outcome = dataclasses.replace(
        outcome, metrics=outcome.metrics.model_copy(update={"runtimes": runtimes})
    )
    reporter.check_cancel()
    store_outcome(lease, examples, outcome, settings, reporter)
    measure_paths(lease.run_id, context)


# ---------------------------------------------------------------- data


def load_examples(run_id: int, options: RunOptions, settings: Settings) -> list[Example]:
    """Labelled images of the run's project, with splits made and persisted where missing.

    Reads the few columns a run needs, not Image rows: 100,000 ORM objects (and their
    labels) held 150-200 MB of the worker's memory for the rest of the run."""
    store = ImageStore(settings)
    with session_scope() as session:
        project_id = session.scalar(select(Run.project_id).where(Run.id == run_id))
        labelled = session.execute(
            select(Image.id, Image.sha256, Image.filename, Image.split, Image.label_id, Label.name)
            .join(Label, Label.id == Image.label_id)
            .where(Image.project_id == project_id)
            .order_by(Image.id)
        ).all()
        counts: dict[str, int] = {}
        for row in labelled:
            counts[row.name] = counts.get(row.name, 0) + 1
        check_trainable(counts)

        splits = {row.id: row.split for row in labelled}
        unsplit = [row for row in labelled if row.split is None]
        if not any(row.split == "val" for row in labelled):
            # No validation images at all: carve them out of the training ones too.
            unsplit = [row for row in labelled if row.split in (None, "train")]
        if unsplit:
            chosen = stratified_split(
                [row.sha256 for row in unsplit],
                [row.name for row in unsplit],
                val_fraction=options.val_fraction,
                seed=options.seed,
            )
            changes = [
                {"id": row.id, "split": chosen[row.sha256], "split_source": "auto"}
                for row in unsplit
            ]
            session.execute(update(Image), changes)
            splits.update((change["id"], change["split"]) for change in changes)
        examples = [
            Example(
                image_id=row.id,
                sha256=row.sha256,
                path=store.blob_path(row.sha256),
                filename=row.filename,
                label=row.name,
                split=splits[row.id] or "train",
                label_id=row.label_id,
            )
            for row in labelled
        ]
    if len({e.label for e in examples if e.split == "train"}) < 2:
        raise NotEnoughData("The training split needs images of at least 2 labels.")
    if not any(e.split == "val" for e in examples):
        raise NotEnoughData("No images are left for validation; add more images per label.")
    return examples


# ---------------------------------------------------------------- results


def store_outcome(
    lease: Lease,
    examples: list[Example],
    outcome: Outcome,
    settings: Settings,
    reporter: RunReporter,
) -> None:
    """Verified ONNX first, then the run is done; TorchScript and the bundle follow.

    The ONNX model is what prediction serves, so the run succeeds as soon as it is
    verified; the other formats are listed as ``exports_pending`` until they are ready.
    """
    reporter.stage("exporting", 0.94)
    started = time.perf_counter()
    paths = ArtifactPaths(settings, lease.run_id, "+".join(outcome.backbones))
    onnx_artifact = export_onnx_artifact(paths, outcome)
    metrics = outcome.metrics.model_copy(
        update={
            "timings": {
                **outcome.metrics.timings,
                "export_s": round(time.perf_counter() - started, 3),
            },
            "exports_pending": ["torchscript", "onnx-int8", "bundle"],
            # Which label each class was: the run page names a label renamed since.
            "label_ids": {e.label: e.label_id for e in examples if e.label_id is not None},
        }
    )
    reporter.check_cancel()
    with session_scope() as session:
        session.execute(delete(Prediction).where(Prediction.run_id == lease.run_id))
        session.execute(delete(Artifact).where(Artifact.run_id == lease.run_id))
        session.add_all([*predictions(lease.run_id, outcome), onnx_artifact])
        transitions.succeed(
            session, lease, metrics, history=outcome.history, decision=outcome.decision
        )
    export_extra_artifacts(paths, examples, outcome, metrics)


def measure_paths(run_id: int, context: ModeContext) -> None:
    """The CPU paths this run measures on its images for the next runs (worker/ml/precision.py),
    after it has succeeded; its metrics then say what was measured. Never fails the run."""
    found = {}
    for backbone, check in context.checks.items():
        try:
            checked = check()
        except Exception:
            log.exception("run %s: measuring the CPU paths of %s failed", run_id, backbone)
            continue
        if checked is not None:
            found[backbone] = checked
    if not found:
        return
    with session_scope() as session:
        run = session.get(Run, run_id)
        if run is None or run.metrics is None:
            return
        metrics = RunMetrics.model_validate(run.metrics)
        runtimes = {
            backbone: used.model_copy(
                update={
                    "reason": measured_reason(found[backbone]),
                    "measured_at": found[backbone].measured_at,
                }
            )
            if backbone in found
            else used
            for backbone, used in metrics.runtimes.items()
        }
        transitions.record_exports(
            session, run_id, metrics.model_copy(update={"runtimes": runtimes})
        )


def predictions(run_id: int, outcome: Outcome) -> list[Prediction]:
    """The run's answer for each validation image."""
    return [
        Prediction(
            run_id=run_id,
            image_id=example.image_id,
            filename=example.filename,
            split=example.split,
            true_label=example.label,
            predicted_label=outcome.labels[int(np.argmax(row))],
            confidence=float(np.max(row)),
            probabilities={name: float(p) for name, p in zip(outcome.labels, row, strict=True)},
        )
        for example, row in zip(outcome.val_examples, outcome.val_proba, strict=True)
    ]
