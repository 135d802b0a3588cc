"""One training run from its database row to stored metrics, predictions and model files.

Tasks call :func:`execute_run` with an id; this module owns the run's life cycle (claim,
stages, final state) and delegates the work to the step modules in ``worker/ml``.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import CursorResult, delete, select, update

from backend.config import Settings, get_settings
from backend.db import session_scope, utcnow
from backend.images.models import Image
from backend.runs.models import Artifact, Prediction, Run
from backend.storage import ImageStore
from worker.ml.errors import Cancelled, MLError, NotEnoughData
from worker.ml.evaluate import check_trainable, compute_metrics, stratified_split
from worker.progress import RunReporter

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2


@dataclass(frozen=True)
class Example:
    image_id: int
    sha256: str
    path: Path
    filename: str
    label: str
    split: str


# ---------------------------------------------------------------- life cycle


def claim_run(run_id: int, settings: Settings) -> bool:
    """Atomically move a queued (or abandoned) run to running; False when it is not ours."""
    stale_before = utcnow() - timedelta(seconds=settings.worker_heartbeat_timeout_s)
    with session_scope() as session:
        result = session.execute(
            update(Run)
            .where(
                Run.id == run_id,
                Run.cancel_requested.is_(False),
                (Run.status == "queued")
                | ((Run.status == "running") & (Run.heartbeat_at < stale_before)),
            )
            .values(
                status="running",
                stage="preparing",
                progress=0.0,
                started_at=utcnow(),
                heartbeat_at=utcnow(),
                attempts=Run.attempts + 1,
                worker=socket.gethostname(),
                error=None,
            )
        )
        return isinstance(result, CursorResult) and result.rowcount == 1


def finish_run(run_id: int, status: str, error: str | None = None, **values: Any) -> None:
    with session_scope() as session:
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(
                status=status,
                stage=status,
                error=error,
                finished_at=utcnow(),
                eta_s=None,
                **values,
            )
        )


def execute_run(run_id: int) -> str:
    """Run the training of ``run_id`` unless it is finished or owned by a live worker."""
    settings = get_settings()
    with session_scope() as session:
        run = session.get(Run, run_id)
        if run is None or run.is_finished:
            return "skipped"
        if run.cancel_requested:
            finish_run(run_id, "cancelled")
            return "cancelled"
        mode = run.mode
    if not claim_run(run_id, settings):
        return "skipped"
    with RunReporter(run_id) as reporter:
        try:
            train(run_id, mode, settings, reporter)
        except Cancelled:
            finish_run(run_id, "cancelled")
            return "cancelled"
        except MLError as exc:
            finish_run(run_id, "failed", str(exc))
            return "failed"
        except Exception as exc:
            log.exception("run %s crashed", run_id)
            finish_run(
                run_id,
                "failed",
                f"Training stopped because of an internal error ({type(exc).__name__}: {exc}). "
                "The details are in the worker's log.",
            )
            return "failed"
    return "succeeded"


def recover_abandoned_runs(settings: Settings | None = None) -> list[int]:
    """Runs whose worker died (no heartbeat): requeue once, then fail with a reason."""
    settings = settings or get_settings()
    stale_before = utcnow() - timedelta(seconds=settings.worker_heartbeat_timeout_s)
    requeue: list[tuple[int, str]] = []
    with session_scope() as session:
        stale = session.scalars(
            select(Run).where(Run.status == "running", Run.heartbeat_at < stale_before)
        ).all()
        for run in stale:
            if run.attempts < MAX_ATTEMPTS and not run.cancel_requested:
                run.status, run.stage = "queued", "queued"
                run.error = None
                requeue.append((run.id, run.mode))
            else:
                run.status = run.stage = "cancelled" if run.cancel_requested else "failed"
                run.finished_at = utcnow()
                if not run.cancel_requested:
                    run.error = (
                        "The worker training this model stopped (it was restarted or ran out "
                        "of memory) and the retry did not finish either. Start the run again."
                    )
    from backend.queue import enqueue_run

    for run_id, mode in requeue:
        enqueue_run(run_id, mode)
    return [run_id for run_id, _ in requeue]


def resend_queued_runs() -> list[int]:
    """Send the tasks of every queued run again (a restarted broker may have lost them);
    a duplicate message is harmless, since only one worker can claim a run."""
    from backend.queue import enqueue_run

    with session_scope() as session:
        queued = session.execute(select(Run.id, Run.mode).where(Run.status == "queued")).all()
    for run_id, mode in queued:
        enqueue_run(run_id, mode)
    return [run_id for run_id, _ in queued]


# ---------------------------------------------------------------- data


def load_examples(run_id: int, settings: Settings) -> tuple[list[Example], dict[str, Any]]:
    """Labelled images of the run's project, with splits made and persisted where missing."""
    store = ImageStore(settings)
    with session_scope() as session:
        run = session.get(Run, run_id)
        assert run is not None
        options = dict(run.options or {})
        images = session.scalars(
            select(Image)
            .where(Image.project_id == run.project_id, Image.label_id.is_not(None))
            .order_by(Image.id)
        ).all()
        counts: dict[str, int] = {}
        for image in images:
            assert image.label is not None
            counts[image.label.name] = counts.get(image.label.name, 0) + 1
        check_trainable(counts)

        unsplit = [i for i in images if i.split is None]
        if not any(i.split == "val" for i in images):
            # No validation images at all: carve them out of the training ones too.
            unsplit = [i for i in images if i.split in (None, "train")]
        if unsplit:
            chosen = stratified_split(
                [i.sha256 for i in unsplit],
                [i.label.name for i in unsplit if i.label is not None],
                val_fraction=float(options.get("val_fraction", 0.2)),
                seed=int(options.get("seed", 0)),
            )
            for image in unsplit:
                image.split = chosen[image.sha256]
                image.split_source = "auto"
        examples = [
            Example(
                image_id=i.id,
                sha256=i.sha256,
                path=store.blob_path(i.sha256),
                filename=i.filename,
                label=i.label.name if i.label is not None else "",
                split=i.split or "train",
            )
            for i in images
        ]
    train_labels = {e.label for e in examples if e.split == "train"}
    if len(train_labels) < 2:
        raise NotEnoughData("The training split needs images of at least 2 labels.")
    if not any(e.split == "val" for e in examples):
        raise NotEnoughData("No images are left for validation; add more images per label.")
    return examples, options


# ---------------------------------------------------------------- training


def train(run_id: int, mode: str, settings: Settings, reporter: RunReporter) -> None:
    examples, options = load_examples(run_id, settings)
    with session_scope() as session:
        run = session.get(Run, run_id)
        assert run is not None
        backbone = run.backbone
    if mode == "linear":
        from worker.linear import train_linear

        outcome = train_linear(examples, backbone, options, settings, reporter)
    elif mode == "finetune":
        from worker.finetune_run import train_finetune

        outcome = train_finetune(examples, backbone, options, settings, reporter)
    else:
        from worker.auto import train_auto

        outcome = train_auto(examples, backbone, options, settings, reporter)
    reporter.check_cancel()
    store_outcome(run_id, examples, outcome, settings, reporter)


@dataclass
class Outcome:
    """What a training strategy hands back: a classifier ready to export and its scores."""

    labels: list[str]
    val_proba: np.ndarray  # (n_val, C), columns in ``labels`` order
    val_examples: list[Example]
    metrics: dict[str, Any]
    model: Any  # torch nn.Module: normalized image batch -> probabilities
    preprocess: Any  # backend.inference.preprocess.Preprocess
    backbone: str
    weights: dict[str, Any]
    history: list[dict[str, Any]] | None = None
    decision: dict[str, Any] | None = None
    test_examples: list[Example] | None = None
    test_proba: np.ndarray | None = None
    # Linear runs: the head and the cached feature graph let export skip a fresh
    # backbone export (see export.compose_classifier_onnx).
    head: Any = None
    feature_onnx: Path | None = None


def evaluation(labels: list[str], examples: list[Example], proba: np.ndarray) -> dict[str, Any]:
    return compute_metrics([e.label for e in examples], proba, labels)


def store_outcome(
    run_id: int,
    examples: list[Example],
    outcome: Outcome,
    settings: Settings,
    reporter: RunReporter,
) -> None:
    reporter.stage("exporting", 0.94)
    started = time.perf_counter()
    artifacts = export_artifacts(run_id, examples, outcome, settings, reporter)
    metrics = dict(outcome.metrics)
    metrics.setdefault("timings", {})["export_s"] = round(time.perf_counter() - started, 3)
    reporter.check_cancel()
    predictions = [
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
    with session_scope() as session:
        session.execute(delete(Prediction).where(Prediction.run_id == run_id))
        session.execute(delete(Artifact).where(Artifact.run_id == run_id))
        session.add_all([*predictions, *artifacts])
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(
                status="succeeded",
                stage="succeeded",
                progress=1.0,
                eta_s=None,
                metrics=metrics,
                history=outcome.history,
                decision=outcome.decision,
                finished_at=utcnow(),
            )
        )


def export_artifacts(
    run_id: int,
    examples: list[Example],
    outcome: Outcome,
    settings: Settings,
    reporter: RunReporter,
) -> list[Artifact]:
    """ONNX, TorchScript and the bundle, each verified before it is renamed into place."""
    from worker.ml.bundle import build_bundle
    from worker.ml.export import compose_classifier_onnx, export_onnx, export_torchscript
    from worker.model_card import CardFacts, render_model_card

    out_dir = settings.artifacts_dir / f"run-{run_id}"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"autodl-run{run_id}-{outcome.backbone}"
    metadata = {
        "backbone": outcome.backbone,
        "weights": str(outcome.weights.get("source", "")),
        "run_id": str(run_id),
    }
    if outcome.head is not None and outcome.feature_onnx is not None:
        onnx_path = compose_classifier_onnx(
            outcome.feature_onnx,
            outcome.head,
            outcome.preprocess,
            outcome.labels,
            out_dir / "model.onnx",
            metadata=metadata,
        )
    else:
        onnx_path = export_onnx(
            outcome.model,
            outcome.preprocess,
            outcome.labels,
            out_dir / "model.onnx",
            metadata=metadata,
        )
    verify_export(onnx_path, outcome)
    reporter.check_cancel()
    reporter.stage("exporting", 0.96)
    torchscript_path = export_torchscript(
        outcome.model,
        outcome.preprocess,
        outcome.labels,
        out_dir / "model.torchscript.pt",
        metadata=metadata,
    )
    reporter.check_cancel()
    reporter.stage("exporting", 0.98)
    with session_scope() as session:
        run = session.get(Run, run_id)
        assert run is not None
        project_name, mode = run.project.name, run.mode
    counts: dict[str, dict[str, int]] = {}
    for example in examples:
        per_label = counts.setdefault(example.label, {})
        per_label[example.split] = per_label.get(example.split, 0) + 1
    card = render_model_card(
        CardFacts(
            project=project_name,
            run_id=run_id,
            mode=mode,
            backbone=outcome.backbone,
            weights_source=str(outcome.weights.get("source", "")),
            labels=outcome.labels,
            counts=counts,
            metrics=outcome.metrics,
            input_size=outcome.preprocess.input_size,
            mean=outcome.preprocess.mean,
            std=outcome.preprocess.std,
            trained_at=utcnow(),
            decision=outcome.decision,
        )
    )
    (out_dir / "MODEL_CARD.md").write_text(card)
    bundle_path = build_bundle(
        onnx_path,
        out_dir / "bundle.zip",
        labels=outcome.labels,
        preprocess=outcome.preprocess,
        model_card=card,
        check_image=outcome.val_examples[0].path,
        expected=outcome.val_proba[0],
        root=stem,
    )
    return [
        _artifact_row(run_id, "onnx", onnx_path, f"{stem}.onnx"),
        _artifact_row(run_id, "torchscript", torchscript_path, f"{stem}.torchscript.pt"),
        _artifact_row(run_id, "bundle", bundle_path, f"{stem}.zip"),
    ]


def verify_export(onnx_path: Path, outcome: Outcome, sample: int = 16) -> None:
    """The exported file must reproduce the run's own validation predictions."""
    from backend.inference.predictor import OnnxClassifier

    classifier = OnnxClassifier(onnx_path)
    chosen = list(range(0, len(outcome.val_examples), max(1, len(outcome.val_examples) // sample)))
    answers = classifier.predict([outcome.val_examples[i].path for i in chosen])
    for i, answer in zip(chosen, answers, strict=True):
        got = np.array([answer["probabilities"][name] for name in outcome.labels])
        if np.abs(got - outcome.val_proba[i]).max() > 1e-3:
            raise RuntimeError(
                f"the exported ONNX model disagrees with the trained model on "
                f"{outcome.val_examples[i].filename}"
            )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _artifact_row(run_id: int, fmt: str, path: Path, filename: str) -> Artifact:
    return Artifact(
        run_id=run_id,
        format=fmt,
        filename=filename,
        path=str(path.resolve()),
        size_bytes=path.stat().st_size,
        sha256=file_sha256(path),
        created_at=utcnow(),
    )
