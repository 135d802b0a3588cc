"""A succeeded run's model files: the verified ONNX classifier, then TorchScript and the
bundle, each listed as an Artifact row only once complete and checked."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.config import Settings
from backend.db import session_scope, utcnow
from backend.runs import transitions
from backend.runs.models import Artifact, Run
from backend.runs.schemas import RunMetrics
from backend.storage import file_sha256, publish_run_file
from worker.modes.base import Example, Outcome

log = logging.getLogger(__name__)

PARITY_ATOL = 1e-3
PARITY_SAMPLE = 16


@dataclass(frozen=True)
class ArtifactPaths:
    settings: Settings
    run_id: int
    backbone: str  # every backbone the model runs, joined by "+" (an ensemble's several)

    @property
    def folder(self) -> Path:
        folder = self.settings.run_dir(self.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def stem(self) -> str:
        return f"autodl-run{self.run_id}-{self.backbone}"

    def metadata(self, outcome: Outcome) -> dict[str, str]:
        return {
            "backbone": "+".join(outcome.backbones),
            "backbones": json.dumps(outcome.backbones),
            "weights": outcome.weights.source,
            "run_id": str(self.run_id),
        }


def export_onnx_artifact(paths: ArtifactPaths, outcome: Outcome) -> Artifact:
    """The classifier as ONNX, checked against the run's own validation predictions."""
    from worker.ml.export import compose_classifier_onnx, compose_ensemble_onnx, export_onnx

    target = paths.folder / "model.onnx"
    if outcome.ensemble is not None:
        compose_ensemble_onnx(
            ensemble_graphs(paths.settings, outcome),
            outcome.ensemble,
            [pp for _, pp, _ in outcome.ensemble_inputs or []],
            outcome.labels,
            target,
            metadata=paths.metadata(outcome),
        )
    elif outcome.head is not None and outcome.feature_onnx is not None:
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
    return artifact_row(paths.run_id, "onnx", target, f"{paths.stem}.onnx")


def ensemble_graphs(settings: Settings, outcome: Outcome) -> list[Path]:
    """Each ensemble backbone's cached pooled-feature graph, exported where it is missing
    (every embedding was cached, the graph file was not)."""
    from worker.ml.backbones import create_backbone
    from worker.ml.features import feature_onnx

    graphs = []
    for name, _, graph in outcome.ensemble_inputs or []:
        if graph is None or not graph.exists():
            model, pp, weights = create_backbone(
                name, weights_dir=settings.weights_dir, offline=settings.hf_offline
            )
            graph = feature_onnx(model, name, weights, pp, settings.cache_dir)
        graphs.append(graph)
    return graphs


def export_extra_artifacts(
    paths: ArtifactPaths, examples: list[Example], outcome: Outcome, metrics: RunMetrics
) -> None:
    """TorchScript and the bundle of a succeeded run, each listed once verified. A failure
    is recorded in the metrics (the run keeps its verified ONNX model)."""
    builders: dict[str, Callable[[ArtifactPaths, list[Example], Outcome], Artifact]] = {
        "torchscript": _torchscript,
        "bundle": _bundle,
    }
    for fmt, build in builders.items():
        artifact: Artifact | None
        errors = dict(metrics.export_errors)
        try:
            artifact = build(paths, examples, outcome)
        except Exception as exc:
            log.exception("run %s: %s export failed", paths.run_id, fmt)
            errors[fmt] = f"{type(exc).__name__}: {exc}"
            artifact = None
        pending = [f for f in metrics.exports_pending if f != fmt]
        metrics = metrics.model_copy(update={"exports_pending": pending, "export_errors": errors})
        with session_scope() as session:
            if artifact is not None:
                session.add(artifact)
            transitions.record_exports(session, paths.run_id, metrics)


def _torchscript(paths: ArtifactPaths, examples: list[Example], outcome: Outcome) -> Artifact:
    from worker.ml.export import export_torchscript

    target = paths.folder / "model.torchscript.pt"
    export_torchscript(
        outcome.build_model(),
        [pp for _, pp, _ in outcome.ensemble_inputs]
        if outcome.ensemble_inputs
        else outcome.preprocess,
        outcome.labels,
        target,
        metadata=paths.metadata(outcome),
    )
    return artifact_row(paths.run_id, "torchscript", target, f"{paths.stem}.torchscript.pt")


def _bundle(paths: ArtifactPaths, examples: list[Example], outcome: Outcome) -> Artifact:
    from backend.inference.predictor import OnnxClassifier
    from backend.runs.usage import ModelFacts, bundle_readme
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
            model=outcome.metrics.model,
            inputs=[(b, pp.input_size) for b, pp, _ in outcome.ensemble_inputs or []],
            weights_source=outcome.weights.source,
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
    classifier = OnnxClassifier(paths.folder / "model.onnx")
    facts = ModelFacts(
        labels=list(outcome.labels),
        preprocess=outcome.preprocess,
        input_name=classifier.input_name,
        onnx_filename="model.onnx",
    )
    readme = bundle_readme(
        facts,
        project=project_name,
        run_id=paths.run_id,
        backbone=outcome.backbone,
        own_code=len(classifier.inputs) == 1,
    )
    target = build_bundle(
        paths.folder / "model.onnx",
        paths.folder / "bundle.zip",
        labels=outcome.labels,
        preprocess=outcome.preprocess,
        model_card=card,
        readme=readme,
        check_image=outcome.val_examples[0].path,
        expected=outcome.val_proba[0],
        root=paths.stem,
    )
    return artifact_row(paths.run_id, "bundle", target, f"{paths.stem}.zip")


def verify_export(onnx_path: Path, outcome: Outcome) -> None:
    """The exported file must reproduce the run's own validation predictions."""
    from backend.inference.predictor import OnnxClassifier

    classifier = OnnxClassifier(onnx_path)
    if len(classifier.inputs) != len(outcome.backbones):
        raise RuntimeError(
            f"the exported ONNX model has {len(classifier.inputs)} inputs for "
            f"{len(outcome.backbones)} backbones"
        )
    n = len(outcome.val_examples)
    chosen = list(range(0, n, max(1, n // PARITY_SAMPLE)))
    answers = classifier.predict([outcome.val_examples[i].path for i in chosen])
    for i, answer in zip(chosen, answers, strict=True):
        got = np.array([answer["probabilities"][name] for name in outcome.labels])
        if np.abs(got - outcome.val_proba[i]).max() > PARITY_ATOL:
            raise RuntimeError(
                f"the exported ONNX model disagrees with the trained model on "
                f"{outcome.val_examples[i].filename}"
            )


def artifact_row(run_id: int, fmt: str, path: Path, filename: str) -> Artifact:
    """The row of a complete, verified file, once it is in the storage (backend/storage.py)."""
    recorded = publish_run_file(run_id, path)
    return Artifact(
        run_id=run_id,
        format=fmt,
        filename=filename,
        path=recorded,
        size_bytes=path.stat().st_size,
        sha256=file_sha256(path),
        created_at=utcnow(),
    )
