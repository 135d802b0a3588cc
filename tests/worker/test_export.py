"""Exported classifiers reproduce the trained pipeline, through ONNX and TorchScript."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.inference.predictor import OnnxClassifier
from backend.inference.preprocess import load_image
from tests.worker.conftest import BACKBONE, Image
from worker.ml.backbones import create_backbone
from worker.ml.export import (
    build_classifier,
    compose_classifier_onnx,
    export_onnx,
    export_torchscript,
)
from worker.ml.features import EmbeddingResult
from worker.ml.heads import TrainedHead, train_head

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def head(images: list[Image], lite0: EmbeddingResult) -> TrainedHead:
    train = [i for i, im in enumerate(images) if im.split == "train"]
    return train_head(lite0.embeddings[train], [images[i].label for i in train], "logreg")


@pytest.fixture(scope="module")
def classifier(head: TrainedHead) -> torch.nn.Module:
    backbone, _, _ = create_backbone(BACKBONE)
    return build_classifier(backbone, head)


@pytest.fixture(scope="module")
def onnx_path(
    classifier: torch.nn.Module, lite0: EmbeddingResult, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "model.onnx"
    labels = ["ants", "bees"]
    return export_onnx(classifier, lite0.preprocess, labels, out, metadata={"backbone": BACKBONE})


def _val(images: list[Image], n: int = 16) -> list[int]:
    return [i for i, im in enumerate(images) if im.split == "val"][::9][:n]


def test_onnx_matches_the_trained_head(
    onnx_path: Path, head: TrainedHead, images: list[Image], lite0: EmbeddingResult
) -> None:
    rows = _val(images)
    model = OnnxClassifier(onnx_path)
    batch = np.stack([load_image(images[i].path, model.preprocess) for i in rows])
    got = model.predict_arrays(batch)
    expected = head.predict_proba(lite0.embeddings[rows])
    assert np.abs(got - expected).max() <= 1e-4


def test_onnx_file_carries_what_a_predictor_needs(onnx_path: Path) -> None:
    import onnx

    model = onnx.load(str(onnx_path))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["labels"]) == ["ants", "bees"]
    assert json.loads(props["preprocess"])["input_size"] == 224
    assert props["backbone"] == BACKBONE and "autodl_version" in props
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    assert not list(onnx_path.parent.glob(".*.tmp"))


def test_predictor_labels_real_files(
    onnx_path: Path, head: TrainedHead, images: list[Image], lite0: EmbeddingResult
) -> None:
    rows = _val(images)
    with open(images[rows[0]].path, "rb") as fileobj:
        predictions = OnnxClassifier(onnx_path).predict(
            [fileobj, *(images[i].path for i in rows[1:])]
        )
    assert [p["label"] for p in predictions] == list(head.predict(lite0.embeddings[rows]))
    assert set(predictions[0]["probabilities"]) == {"ants", "bees"}
    assert sum(predictions[0]["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def test_the_predictor_never_spins_its_threads_between_runs(onnx_path: Path) -> None:
    """Spinning intra-op threads (onnxruntime's default) took the cores concurrent requests
    wait for: 10 concurrent predictions took twice as long (bench/predict_threads.py)."""
    from backend.inference.predictor import SPIN_CONFIG

    options = OnnxClassifier(onnx_path).session.get_session_options()
    assert options.get_session_config_entry(SPIN_CONFIG) == "0"


def test_torchscript_matches(
    classifier: torch.nn.Module, lite0: EmbeddingResult, tmp_path: Path
) -> None:
    out = export_torchscript(classifier, lite0.preprocess, ["ants", "bees"], tmp_path / "m.pt")
    extra = {"labels": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["labels"]) == ["ants", "bees"]
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(loaded(x), classifier(x), atol=1e-5)


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_composed_onnx_appends_the_head_to_the_cached_feature_graph(
    kind: str, images: list[Image], lite0: EmbeddingResult, cache_dir: Path, tmp_path: Path
) -> None:
    train = [i for i, im in enumerate(images) if im.split == "train"]
    head = train_head(lite0.embeddings[train], [images[i].label for i in train], kind)
    assert lite0.feature_graph is not None
    features = Path(lite0.feature_graph)  # the fp32 graph (an int8 copy may lie beside it)
    out = compose_classifier_onnx(
        features, head, lite0.preprocess, head.classes, tmp_path / "model.onnx"
    )
    model = OnnxClassifier(out)
    assert model.labels == ["ants", "bees"]
    rows = _val(images)
    batch = np.stack([load_image(images[i].path, model.preprocess) for i in rows])
    expected = head.predict_proba(lite0.embeddings[rows])
    assert np.abs(model.predict_arrays(batch) - expected).max() <= 1e-4
