"""Runtime and precision by measurement: the float32 reference, agreement, the choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.inference.preprocess import Preprocess, load_image
from tests.worker.conftest import Image
from worker.ml.features import EmbeddingResult
from worker.ml.precision import (
    Candidate,
    Dataset,
    candidates,
    cosine,
    features,
    measure,
    pick,
    quantize_int8,
    runner,
)


def _dataset(images: list[Image], pp: Preprocess) -> Dataset:
    """Eight real images per label and split."""

    def part(split: str) -> tuple[np.ndarray, list[str]]:
        chosen = [
            im
            for label in ("ants", "bees")
            for im in [im for im in images if (im.split, im.label) == (split, label)][:8]
        ]
        return np.stack([load_image(im.path, pp) for im in chosen]), [im.label for im in chosen]

    train, y_train = part("train")
    val, y_val = part("val")
    return Dataset("hymenoptera", train, y_train, val, y_val)


def test_reference_agrees_with_itself_and_openvino_f32(
    images: list[Image], lite0: EmbeddingResult, tmp_path: Path
) -> None:
    assert lite0.feature_graph is not None
    data = _dataset(images, lite0.preprocess)
    found = [c for c in candidates(lite0.feature_graph, None) if c.precision == "f32"]
    results = measure(found, [data], threads=2)
    reference, openvino = results
    assert reference.loss == {"hymenoptera": 0.0} and reference.acceptable
    assert openvino.cosine_min > 0.9999 and abs(openvino.loss["hymenoptera"]) < 1e-9
    assert pick(results) in results and all(r.img_s > 0 for r in results)


def test_int8_graph_is_close_but_not_identical(
    images: list[Image], lite0: EmbeddingResult, tmp_path: Path
) -> None:
    assert lite0.feature_graph is not None
    data = _dataset(images, lite0.preprocess)
    int8 = quantize_int8(lite0.feature_graph, data.train[:8], tmp_path / "int8.onnx")
    ref = features(runner(Candidate("f32", "onnxruntime", "f32", lite0.feature_graph), 2), data.val)
    got = features(runner(Candidate("int8", "onnxruntime", "int8", int8), 2), data.val)
    similarity = cosine(got, ref)
    assert 0.9 < similarity.mean() < 0.99999
