"""One training run from its database row to stored metrics, predictions and model files.

Tasks call :func:`execute_run` with an id; this module owns the run's life cycle (claim,
stages, final state) and delegates the work to the step modules in ``worker/ml``.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import time
from collections.abc import Callable
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
    # Builds the torch nn.Module (normalized image batch -> probabilities); called only
    # when a format needs it, so a linear run never loads the torch backbone to succeed.
    build_model: Callable[[], Any]
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


EXTRA_FORMATS = ("torchscript", "bundle")


def store_outcome(
    run_id: int,
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
    paths = ArtifactPaths(settings, run_id, outcome.backbone)
    onnx_artifact = export_onnx_artifact(paths, outcome)
    metrics = dict(outcome.metrics)
    metrics.setdefault("timings", {})["export_s"] = round(time.perf_counter() - started, 3)
    metrics["exports_pending"] = list(EXTRA_FORMATS)
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
        session.add_all([*predictions, onnx_artifact])
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
    export_extra_artifacts(paths, examples, outcome, metrics)


@dataclass(frozen=True)
class ArtifactPaths:
    settings: Settings
    run_id: int
    backbone: str

    @property
    def folder(self) -> Path:
        folder = self.settings.artifacts_dir / f"run-{self.run_id}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def stem(self) -> str:
        return f"autodl-run{self.run_id}-{self.backbone}"

    def metadata(self, outcome: Outcome) -> dict[str, str]:
        return {
            "backbone": outcome.backbone,
            "weights": str(outcome.weights.get("source", "")),
            "run_id": str(self.run_id),
        }


def export_onnx_artifact(paths: ArtifactPaths, outcome: Outcome) -> Artifact:
    """The classifier as ONNX, checked against the run's own validation predictions."""
    from worker.ml.export import compose_classifier_onnx, export_onnx

    target = paths.folder / "model.onnx"
    if outcome.head is not None and outcome.feature_onnx is not None:
        compose_classifier_onnx(
            outcome.feature_onnx,
            outcome.head,
            outcome.preprocess,
            outcome.labels,
            target,
            metadata=paths.metadata(outcome),
        )
    else:
        export_onnx(
            outcome.build_model(),
            outcome.preprocess,
            outcome.labels,
            target,
            metadata=paths.metadata(outcome),
        )
    verify_export(target, outcome)
    return _artifact_row(paths.run_id, "onnx", target, f"{paths.stem}.onnx")


def export_extra_artifacts(
    paths: ArtifactPaths, examples: list[Example], outcome: Outcome, metrics: dict[str, Any]
) -> None:
    """TorchScript and the bundle of a succeeded run, each listed once verified. A failure
    is recorded in the metrics (the run keeps its verified ONNX model)."""
    errors: dict[str, str] = {}
    for fmt, build in (("torchscript", _torchscript), ("bundle", _bundle)):
        try:
            artifact = build(paths, examples, outcome)
        except Exception as exc:
            log.exception("run %s: %s export failed", paths.run_id, fmt)
            errors[fmt] = f"{type(exc).__name__}: {exc}"
            artifact = None
        pending = [f for f in metrics["exports_pending"] if f != fmt]
        metrics = {**metrics, "exports_pending": pending}
        if errors:
            metrics["export_errors"] = errors
        with session_scope() as session:
            if artifact is not None:
                session.add(artifact)
            session.execute(update(Run).where(Run.id == paths.run_id).values(metrics=metrics))


def _torchscript(paths: ArtifactPaths, examples: list[Example], outcome: Outcome) -> Artifact:
    from worker.ml.export import export_torchscript

    target = paths.folder / "model.torchscript.pt"
    export_torchscript(
        outcome.build_model(),
        outcome.preprocess,
        outcome.labels,
        target,
        metadata=paths.metadata(outcome),
    )
    return _artifact_row(paths.run_id, "torchscript", target, f"{paths.stem}.torchscript.pt")


def _bundle(paths: ArtifactPaths, examples: list[Example], outcome: Outcome) -> Artifact:
    from worker.ml.bundle import build_bundle
    from worker.model_card import CardFacts, render_model_card

    with session_scope() as session:
        run = session.get(Run, paths.run_id)
        assert run is not None
        project_name, mode = run.project.name, run.mode
    counts: dict[str, dict[str, int]] = {}
    for example in examples:
        per_label = counts.setdefault(example.label, {})
        per_label[example.split] = per_label.get(example.split, 0) + 1
    card = render_model_card(
        CardFacts(
            project=project_name,
            run_id=paths.run_id,
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
    (paths.folder / "MODEL_CARD.md").write_text(card)
    target = build_bundle(
        paths.folder / "model.onnx",
        paths.folder / "bundle.zip",
        labels=outcome.labels,
        preprocess=outcome.preprocess,
        model_card=card,
        check_image=outcome.val_examples[0].path,
        expected=outcome.val_proba[0],
        root=paths.stem,
    )
    return _artifact_row(paths.run_id, "bundle", target, f"{paths.stem}.zip")


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
