"""Auto's combined probe on real hymenoptera embeddings of two bundled backbones, made as
the Auto mode makes them (at ``SCALE`` times each backbone's input size): what it measures,
what it keeps, and that its exported ONNX and TorchScript graphs compute it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from backend.inference.predictor import OnnxClassifier
from tests.worker.conftest import Image
from worker.ml.backbones import create_backbone
from worker.ml.ensemble import SCALE, Ensemble, _Space, fit_ensemble
from worker.ml.export import (
    build_ensemble_classifier,
    compose_ensemble_onnx,
    export_torchscript,
)
from worker.ml.features import EmbeddingResult, embed_images, scaled

BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1")


@pytest.fixture(scope="module")
def subset(images: list[Image]) -> tuple[list[Image], list[Image]]:
    """8 training and 4 validation pictures per label."""
    train: list[Image] = []
    for label in ("ants", "bees"):
        train += [im for im in images if im.split == "train" and im.label == label][:8]
    val: list[Image] = []
    for label in ("ants", "bees"):
        val += [im for im in images if im.split == "val" and im.label == label][:4]
    return train, val


@pytest.fixture(scope="module")
def embedded(
    subset: tuple[list[Image], list[Image]], cache_dir: Path
) -> dict[tuple[str, bool], EmbeddingResult]:
    train, val = subset
    items = [(im.sha256, im.path) for im in train + val]
    return {
        (b, flip): embed_images(items, b, cache_dir=cache_dir, hflip=flip, scale=SCALE)
        for b in BACKBONES
        for flip in (False, True)
    }


@pytest.fixture(scope="module")
def fitted(
    subset: tuple[list[Image], list[Image]], embedded: dict[tuple[str, bool], EmbeddingResult]
) -> Ensemble:
    n = len(subset[0])
    plain = {b: embedded[b, False].embeddings[:n] for b in BACKBONES}
    flipped = {b: embedded[b, True].embeddings[:n] for b in BACKBONES}
    return fit_ensemble(plain, [im.label for im in subset[0]], flipped, seed=0)


def test_every_candidate_is_measured_and_the_lowest_log_loss_is_kept(fitted: Ensemble) -> None:
    # Two views x (each backbone alone, averaged, concatenated).
    kinds = sorted((c.kind, c.flip) for c in fitted.candidates)
    assert kinds == sorted(
        [(k, f) for f in (False, True) for k in ("single", "single", "average", "concat")]
    )
    assert fitted.chosen.cv_log_loss == min(c.cv_log_loss for c in fitted.candidates)
    for c in fitted.candidates:
        assert 0.0 <= c.cv_accuracy <= 1.0 and c.cv_log_loss > 0.0
    assert fitted.repeats == 3 and fitted.folds == 5
    assert abs(sum(m.weight for m in fitted.members) - 1.0) < 1e-9
    assert set(fitted.backbones) <= set(BACKBONES)


def test_validation_predictions_are_probabilities_and_beat_chance(
    subset: tuple[list[Image], list[Image]],
    embedded: dict[tuple[str, bool], EmbeddingResult],
    fitted: Ensemble,
) -> None:
    n = len(subset[0])
    plain = {b: embedded[b, False].embeddings[n:] for b in BACKBONES}
    flipped = {b: embedded[b, True].embeddings[n:] for b in BACKBONES}
    proba = fitted.predict_proba(plain, flipped)
    assert np.allclose(proba.sum(axis=1), 1.0)
    predicted = np.asarray(fitted.classes)[proba.argmax(axis=1)]
    assert np.mean(predicted == [im.label for im in subset[1]]) >= 0.75


def test_fitting_in_the_span_of_the_rows_is_the_same_model() -> None:
    """The coordinates trick is exact: same probabilities as the full-width regression."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 300))
    y = (X[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(int)
    space = _Space.of(X)
    assert space.coords.shape[1] <= 40
    Z = (X - space.mean) / space.std
    full = LogisticRegression(C=0.1, tol=1e-10, max_iter=10_000).fit(Z, y)
    small = LogisticRegression(C=0.1, tol=1e-10, max_iter=10_000).fit(space.coords, y)
    head = space.head(small, ["0", "1"], {"C": 0.1})
    test = rng.normal(size=(10, 300))
    expected = full.predict_proba((test - space.mean) / space.std)
    assert np.abs(head.predict_proba(test) - expected).max() < 1e-5


def test_the_exported_ensemble_computes_the_ensemble(
    subset: tuple[list[Image], list[Image]],
    embedded: dict[tuple[str, bool], EmbeddingResult],
    fitted: Ensemble,
    tmp_path: Path,
) -> None:
    """ONNX (as the API's predictor reads it) and TorchScript: the whole ensemble, every
    member backbone and the combiner, within 1e-4 of the ensemble on real pictures."""
    n = len(subset[0])
    val = subset[1]
    used = fitted.backbones
    graphs = [embedded[b, False].feature_graph for b in used]
    assert all(g is not None for g in graphs)
    pps = [embedded[b, False].preprocess for b in used]
    target = compose_ensemble_onnx(
        [g for g in graphs if g is not None], fitted, pps, fitted.classes, tmp_path / "e.onnx"
    )
    plain = {b: embedded[b, False].embeddings[n:] for b in BACKBONES}
    flipped = {b: embedded[b, True].embeddings[n:] for b in BACKBONES}
    expected = fitted.predict_proba(plain, flipped)

    classifier = OnnxClassifier(target)
    assert classifier.inputs[0][0] == "input"
    assert len(classifier.inputs) == len(used)
    # The predictor decodes every picture at the size the ensemble was trained on.
    assert [pp for _, pp in classifier.inputs] == pps
    answers = classifier.predict([im.path for im in val])
    got = np.array([[a["probabilities"][c] for c in fitted.classes] for a in answers])
    assert np.abs(got - expected).max() <= 1e-4

    nets = [create_backbone(b)[0] for b in used]
    model = build_ensemble_classifier(nets, fitted)
    script = export_torchscript(model, pps, fitted.classes, tmp_path / "e.pt")
    loaded = torch.jit.load(str(script))
    batches = classifier.preprocess_all([im.path for im in val])
    with torch.no_grad():
        traced = loaded(*(torch.from_numpy(b) for b in batches)).numpy()
    assert np.abs(traced - expected).max() <= 1e-4


def test_the_run_pages_code_runs_the_whole_ensemble_as_copied(
    subset: tuple[list[Image], list[Image]],
    embedded: dict[tuple[str, bool], EmbeddingResult],
    tmp_path: Path,
) -> None:
    """The Python snippet of the run page (GET /api/runs/{id}/usage), pasted next to an
    ensemble's ONNX file, feeds each backbone's input its own size and normalisation and
    says what the server's predictor says; the JavaScript and C# ones name every input."""
    from backend.runs.usage import ModelFacts, csharp_onnx, javascript_onnx, python_onnx

    train, val = subset
    n = len(train)
    # Both backbones concatenated: an ensemble of two inputs of their own sizes (224 px of a
    # 256 px resize and 240 px of 272 px).
    two = fit_ensemble(
        {b: embedded[b, False].embeddings[:n] for b in BACKBONES},
        [im.label for im in train],
        seed=0,
        kinds=("concat",),
    )
    assert two.backbones == list(BACKBONES)
    graphs = [embedded[b, False].feature_graph for b in BACKBONES]
    pps = [embedded[b, False].preprocess for b in BACKBONES]
    assert pps[0].resize_size != pps[1].resize_size
    target = compose_ensemble_onnx(
        [g for g in graphs if g is not None], two, pps, two.classes, tmp_path / "model.onnx"
    )
    classifier = OnnxClassifier(target)
    facts = ModelFacts(classifier.labels, classifier.inputs, onnx_filename=target.name)
    assert [name for name, _ in facts.inputs] == ["input", "input_1"]

    picture = val[-1].path
    (tmp_path / "picture.jpg").write_bytes(picture.read_bytes())
    printed = subprocess.run(
        [sys.executable, "-c", python_onnx(facts)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    label, probability = " ".join(printed[:-1]), float(printed[-1])
    served = classifier.predict([picture])[0]
    assert label == served["label"]
    assert abs(probability - served["probabilities"][label]) < 0.02  # JPEG draft decoding aside
    for code in (javascript_onnx(facts), csharp_onnx(facts)):
        for name, pp in facts.inputs:
            assert f'"{name}", ' in code or f'name: "{name}"' in code
            assert str(pp.input_size) in code and str(pp.resize_size) in code


def test_a_backbone_at_a_higher_resolution_sees_the_same_crop_at_more_pixels(
    subset: tuple[list[Image], list[Image]],
    embedded: dict[tuple[str, bool], EmbeddingResult],
    cache_dir: Path,
) -> None:
    """lite0 (224 px of a 256 px resize) at 1.25x: 288 px of a 329 px resize, cached apart
    from its own size, features as wide, and not the same numbers."""
    items = [(im.sha256, im.path) for im in subset[0][:4]]
    high = embed_images(items, "tf_efficientnet_lite0", cache_dir=cache_dir, scale=1.25)
    assert (high.preprocess.input_size, high.preprocess.resize_size) == (288, 329)
    native = embed_images(items, "tf_efficientnet_lite0", cache_dir=cache_dir)
    assert native.preprocess.input_size == 224
    assert scaled(native.preprocess, 1.25) == high.preprocess
    assert scaled(native.preprocess, 1.0) == native.preprocess
    assert native.embeddings.shape[1] == high.embeddings.shape[1]
    assert np.abs(native.embeddings - high.embeddings[:4]).max() > 1e-2
    assert native.feature_graph != high.feature_graph
