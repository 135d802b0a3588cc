"""Runtime and precision by measurement: the float32 reference, agreement, the choice."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

from backend.config import Settings
from backend.inference.preprocess import Preprocess, load_image
from tests.worker.conftest import BACKBONE, Image
from tests.worker.test_modes import Recorder
from worker.ml.features import EmbeddingResult
from worker.ml.precision import (
    FP32,
    MAX_ACCURACY_LOSS,
    MIN_COSINE,
    Candidate,
    Dataset,
    candidates,
    check_paths,
    choice_path,
    choose_path,
    cosine,
    cpu_caps,
    features,
    measure,
    pick,
    quantize_int8,
    runner,
)
from worker.modes.base import Example, ModeContext
from worker.modes.embeddings import embed_examples


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


def _pairs(images: list[Image], split: str, per_label: int) -> list[tuple[Path, str]]:
    """``per_label`` real images of each label of one split, as (path, label)."""
    return [
        (im.path, im.label)
        for label in ("ants", "bees")
        for im in [im for im in images if (im.split, im.label) == (split, label)][:per_label]
    ]


@pytest.mark.slow
def test_a_path_that_loses_accuracy_is_rejected(
    images: list[Image], lite0: EmbeddingResult, tmp_path: Path
) -> None:
    """A real degraded path (int8 calibrated on blank images, so real pictures overflow its
    activation ranges), really measured: it loses accuracy and the rule keeps float32."""
    assert lite0.feature_graph is not None
    data = _dataset(images, lite0.preprocess)
    broken = quantize_int8(
        lite0.feature_graph, np.zeros_like(data.train[:8]), tmp_path / "blank-int8.onnx"
    )
    reference, degraded = measure(
        [
            Candidate("onnxruntime f32", "onnxruntime", "f32", lite0.feature_graph),
            Candidate("int8, blank calibration", "onnxruntime", "int8", broken),
        ],
        [data],
        threads=2,
    )
    print(degraded.row())
    assert reference.acceptable and reference.accuracy["hymenoptera"] >= 80.0
    assert degraded.loss["hymenoptera"] > MAX_ACCURACY_LOSS
    assert not degraded.acceptable
    assert pick([reference, degraded]) is reference


def test_a_cpu_without_bf16_or_int8_measures_nothing(
    images: list[Image], lite0: EmbeddingResult, tmp_path: Path
) -> None:
    """No native bfloat16 and no int8 dot products: fp32 ONNX Runtime at no cost at all."""
    assert lite0.feature_graph is not None
    caps = dataclasses.replace(cpu_caps(), bf16=False, int8=False)
    choice = choose_path(BACKBONE, lite0.weights, tmp_path, caps)
    assert choice is not None and choice.path == FP32 and choice.measured_at is None
    started = time.perf_counter()
    train, val = _pairs(images, "train", 30), _pairs(images, "val", 30)
    graph = lite0.feature_graph
    checked = check_paths(
        BACKBONE, lite0.weights, lite0.preprocess, graph, train, val, tmp_path, caps=caps
    )
    assert checked is None and time.perf_counter() - started < 0.5
    assert not (tmp_path / "runtimes").exists()
    assert [c.name for c in candidates(graph, None, bf16=False)] == [
        "onnxruntime f32",
        "openvino f32",
    ]


def _examples(images: list[Image], part: slice) -> list[Example]:
    """``part`` of each label's real images in each split, as a run's examples."""
    chosen = [
        im
        for split in ("train", "val")
        for label in ("ants", "bees")
        for im in [im for im in images if (im.split, im.label) == (split, label)][part]
    ]
    return [Example(i, im.sha256, im.path, im.path.name, im.label, im.split)
            for i, im in enumerate(chosen)]  # fmt: skip


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.slow
@pytest.mark.skipif(_gpu(), reason="a GPU featurizes in PyTorch: no CPU path is measured")
def test_runs_measure_once_then_featurize_training_images_with_the_choice(
    images: list[Image],
    lite0: EmbeddingResult,
    fresh_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On this CPU seen without bfloat16 (its own flags, less bf16): the first run with
    enough images measures fp32, OpenVINO fp32 and int8 on its real pictures (no bf16) and
    persists the fastest acceptable path; a second run on new pictures does not measure
    again, featurizes its training images with that path and its validation images in fp32."""
    from worker.ml import precision

    caps = dataclasses.replace(cpu_caps(), bf16=False, int8=True)
    monkeypatch.setattr(precision, "cpu_caps", lambda: caps)
    monkeypatch.setattr(precision, "CHECK_MIN_IMAGES", 16)  # 24 per split here
    settings = Settings(data_dir=tmp_path / "data", cache_dir_override=fresh_cache)
    assert choose_path(BACKBONE, lite0.weights, fresh_cache) is None  # due

    first = ModeContext(BACKBONE, settings)
    embed_examples(_examples(images, slice(0, 12)), BACKBONE, first, Recorder())
    used = first.runtimes[BACKBONE]
    assert used.measured_now and used.path == FP32  # this run: the reference
    assert not choice_path(fresh_cache, BACKBONE, lite0.weights, caps).exists()
    measured = first.checks[BACKBONE]()  # what the pipeline runs once the run has succeeded
    assert measured is not None
    print(measured.reason, *measured.measured, sep="\n")
    rows = measured.measured
    assert [row["candidate"] for row in rows] == [
        "onnxruntime f32",
        "openvino f32",
        "onnxruntime int8",
    ]
    for row in rows:
        losses = [*row["loss"].values(), *row["mixed_loss"].values()]
        rule = row["cosine_mean"] >= MIN_COSINE and max(losses) <= MAX_ACCURACY_LOSS
        assert row["acceptable"] == rule
    assert measured.images == {"train": 24, "val": 24}
    record = choice_path(fresh_cache, BACKBONE, lite0.weights, caps)
    stamp = record.stat().st_mtime_ns
    chosen = choose_path(BACKBONE, lite0.weights, fresh_cache)
    assert chosen == dataclasses.replace(measured, measured_now=False)
    fastest = max((r for r in rows if r["acceptable"]), key=lambda r: r["img_s"])
    assert chosen.path.name == fastest["candidate"]
    assert (chosen.path.quantized_graph is not None) == (chosen.path.precision == "int8")

    second = ModeContext(BACKBONE, settings)
    kept, X, result = embed_examples(_examples(images, slice(12, 24)), BACKBONE, second, Recorder())
    used = second.runtimes[BACKBONE]
    assert not used.measured_now and used.path == chosen.path
    assert record.stat().st_mtime_ns == stamp and result.n_computed == 48
    index = {im.sha256: row for row, im in enumerate(images)}
    reference = lite0.embeddings[[index[e.sha256] for e in kept]]
    val = [i for i, e in enumerate(kept) if e.split == "val"]
    train = [i for i, e in enumerate(kept) if e.split == "train"]
    np.testing.assert_allclose(X[val], reference[val], atol=1e-4)  # always fp32
    if chosen.path.precision == "f32":
        np.testing.assert_allclose(X[train], reference[train], atol=1e-3)
    else:  # really computed another way, and close in direction
        assert np.abs(X[train] - reference[train]).max() > 1e-3
        assert cosine(X[train], reference[train]).mean() > MIN_COSINE

    # Another kind of machine (this one with its bf16) has a record of its own.
    real = dataclasses.replace(caps, bf16=True)
    assert choice_path(fresh_cache, BACKBONE, lite0.weights, real) != record
    assert choose_path(BACKBONE, lite0.weights, fresh_cache, real) is None
    # Another worker measuring the same backbone now: this one does not measure too.
    record.with_suffix(".lock").touch()
    started = time.perf_counter()
    pairs = [(e.path, e.label) for e in kept]
    assert lite0.feature_graph is not None
    graph = fresh_cache / "onnx" / lite0.feature_graph.name
    busy = check_paths(
        BACKBONE, lite0.weights, lite0.preprocess, graph, pairs, pairs, fresh_cache,
        min_images=16,
    )  # fmt: skip
    assert busy is None and time.perf_counter() - started < 0.5
