"""A succeeded run's model files: the verified ONNX classifier, then TorchScript, an int8
copy of the ONNX model and the bundle, each listed as an Artifact row only once complete and
checked."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.config import Settings
from backend.db import session_scope, utcnow
from backend.runs import transitions
from backend.runs.models import Artifact, Run
from backend.runs.schemas import Int8Report, RunMetrics
from backend.storage import atomic_path, file_sha256, publish_run_file
from worker.modes.base import Example, Outcome

if TYPE_CHECKING:
    from backend.inference.predictor import OnnxClassifier

log = logging.getLogger(__name__)

PARITY_ATOL = 1e-3
PARITY_SAMPLE = 16
INT8_CALIBRATION = 64  # training images the int8 copy's activation ranges are measured on
# The int8 copy quantises the backbone's convolutions and the head's products; the softmax
# stays float, so its probabilities are not rounded to 1/256.
INT8_OPS = ("Conv", "MatMul", "Gemm")
EVAL_BATCH = 32

Built = tuple[Artifact, dict[str, Any]]  # the file's row, and what it adds to the metrics


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
    for name, pp, graph in outcome.ensemble_inputs or []:
        if graph is None or not graph.exists():
            model, _, weights = create_backbone(
                name, weights_dir=settings.weights_dir, offline=settings.hf_offline
            )
            # At the input's own preprocessing: Auto runs backbones above their input size.
            graph = feature_onnx(model, name, weights, pp, settings.cache_dir)
        graphs.append(graph)
    return graphs


def export_extra_artifacts(
    paths: ArtifactPaths, examples: list[Example], outcome: Outcome, metrics: RunMetrics
) -> None:
    """TorchScript, the int8 ONNX copy and the bundle of a succeeded run, each listed once
    verified. A failure is recorded in the metrics (the run keeps its verified ONNX model)."""
    builders: dict[str, Callable[[ArtifactPaths, list[Example], Outcome], Built]] = {
        "torchscript": _torchscript,
        "onnx-int8": _int8,
        "bundle": _bundle,
    }
    for fmt, build in builders.items():
        artifact: Artifact | None
        errors = dict(metrics.export_errors)
        added: dict[str, Any] = {}
        try:
            artifact, added = build(paths, examples, outcome)
        except Exception as exc:
            log.exception("run %s: %s export failed", paths.run_id, fmt)
            errors[fmt] = f"{type(exc).__name__}: {exc}"
            artifact = None
        pending = [f for f in metrics.exports_pending if f != fmt]
        metrics = metrics.model_copy(
            update={"exports_pending": pending, "export_errors": errors, **added}
        )
        with session_scope() as session:
            if artifact is not None:
                session.add(artifact)
            transitions.record_exports(session, paths.run_id, metrics)


def _torchscript(paths: ArtifactPaths, examples: list[Example], outcome: Outcome) -> Built:
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
    return artifact_row(paths.run_id, "torchscript", target, f"{paths.stem}.torchscript.pt"), {}


def _int8(paths: ArtifactPaths, examples: list[Example], outcome: Outcome) -> Built:
    """An int8 copy of the verified ONNX classifier (static QDQ, calibrated on the run's
    training images), with its validation accuracy next to the fp32 model's on the same
    images."""
    import onnx

    from backend.inference.predictor import OnnxClassifier
    from worker.ml.precision import quantize_int8

    source, target = paths.folder / "model.onnx", paths.folder / "model.int8.onnx"
    fp32 = OnnxClassifier(source)
    train = [e for e in examples if e.split == "train"]
    chosen = train[:: max(1, len(train) // INT8_CALIBRATION)][:INT8_CALIBRATION]
    calibration = _batches(fp32, chosen, batch=8)
    with atomic_path(target) as tmp:
        quantize_int8(source, [feeds for feeds, _ in calibration], tmp, op_types=INT8_OPS)
        model = onnx.load(str(tmp))
        del model.metadata_props[:]
        for key, value in {**fp32.metadata, "precision": "int8"}.items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(tmp))
    int8 = OnnxClassifier(target)
    index = {name: i for i, name in enumerate(fp32.labels)}
    truth, answers, answers_fp32 = [], [], []
    for feeds, rows in _batches(fp32, outcome.val_examples, batch=EVAL_BATCH):
        truth += [index[e.label] for e in rows]
        answers += list(int8.predict_arrays(*feeds.values()).argmax(1))
        answers_fp32 += list(fp32.predict_arrays(*feeds.values()).argmax(1))
    y, got, ref = np.array(truth), np.array(answers), np.array(answers_fp32)
    report = Int8Report(
        size_bytes=target.stat().st_size,
        fp32_size_bytes=source.stat().st_size,
        accuracy=float(np.mean(got == y)),
        fp32_accuracy=float(np.mean(ref == y)),
        agreement=float(np.mean(got == ref)),
        n_val=len(y),
        calibration_images=sum(len(rows) for _, rows in calibration),
    )
    row = artifact_row(paths.run_id, "onnx-int8", target, f"{paths.stem}.int8.onnx")
    return row, {"int8": report}


def _batches(
    classifier: OnnxClassifier, examples: list[Example], batch: int
) -> list[tuple[dict[str, np.ndarray], list[Example]]]:
    """The classifier's feeds (one array per input) for the readable ``examples``, in
    batches, with the examples of each."""
    readable: list[tuple[list[np.ndarray], Example]] = []
    for example in examples:
        try:
            readable.append((classifier.preprocess_all([example.path]), example))
        except Exception:  # unreadable: the run left it out too
            continue
    names = [name for name, _ in classifier.inputs]
    out = []
    for start in range(0, len(readable), batch):
        part = readable[start : start + batch]
        feeds = {n: np.concatenate([arrays[i] for arrays, _ in part]) for i, n in enumerate(names)}
        out.append((feeds, [e for _, e in part]))
    return out


def _bundle(paths: ArtifactPaths, examples: list[Example], outcome: Outcome) -> Built:
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
    card_path = paths.folder / "MODEL_CARD.md"
    card_path.write_text(card)
    # Stored before the bundle is listed: the run page links the card once the bundle is
    # there, and with object storage the API's data dir is not the worker's.
    publish_run_file(paths.run_id, card_path)
    classifier = OnnxClassifier(paths.folder / "model.onnx")
    facts = ModelFacts(
        labels=list(outcome.labels), inputs=classifier.inputs, onnx_filename="model.onnx"
    )
    readme = bundle_readme(
        facts, project=project_name, run_id=paths.run_id, backbone=outcome.backbone
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
    return artifact_row(paths.run_id, "bundle", target, f"{paths.stem}.zip"), {}


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
