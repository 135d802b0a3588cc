"""Featurization: the embedding cache, unreadable files, cancellation, runtimes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.worker.conftest import BACKBONE, Image
from worker.ml.errors import Cancelled
from worker.ml.export import PARITY_TOLERANCE, parity_error
from worker.ml.features import EmbeddingResult, embed_images


def _items(images: list[Image]) -> list[tuple[str, Path]]:
    return [(im.sha256, im.path) for im in images]


def test_session_embeddings_cover_every_image(lite0: EmbeddingResult) -> None:
    assert lite0.embeddings.shape == (398, 1280)
    assert lite0.failed == [] and lite0.valid.all()
    assert lite0.weights.source == "bundled"


def test_cache_featurizes_only_new_images(images: list[Image], fresh_cache: Path) -> None:
    first = embed_images(_items(images[:20]), BACKBONE, cache_dir=fresh_cache)
    assert (first.n_computed, first.n_cached) == (20, 0)
    again = embed_images(_items(images[:20]), BACKBONE, cache_dir=fresh_cache)
    assert (again.n_computed, again.n_cached) == (0, 20)
    assert np.array_equal(first.embeddings, again.embeddings)
    more = embed_images(_items(images[:30]), BACKBONE, cache_dir=fresh_cache)
    assert (more.n_computed, more.n_cached) == (10, 20)
    assert np.array_equal(more.embeddings[:20], first.embeddings)


def test_results_follow_input_order(
    images: list[Image], lite0: EmbeddingResult, cache_dir: Path
) -> None:
    picked = [images[7], images[3], images[7], images[250]]
    got = embed_images(_items(picked), BACKBONE, cache_dir=cache_dir)
    assert got.n_computed == 0
    assert np.array_equal(got.embeddings, lite0.embeddings[[7, 3, 7, 250]])


def test_unreadable_images_are_skipped_and_reported(
    images: list[Image], fresh_cache: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    items = [*_items(images[:3]), ("f" * 64, broken)]
    result = embed_images(items, BACKBONE, cache_dir=fresh_cache)
    assert result.failed == ["f" * 64]
    assert result.valid.tolist() == [True, True, True, False]
    assert result.n_computed == 3


def test_cancellation_between_batches(images: list[Image], fresh_cache: Path) -> None:
    seen: list[tuple[int, int]] = []
    with pytest.raises(Cancelled):
        embed_images(
            _items(images[:12]),
            BACKBONE,
            cache_dir=fresh_cache,
            batch_size=4,
            progress=lambda done, total: seen.append((done, total)),
            should_stop=lambda: len(seen) >= 3,
        )
    assert seen == [(0, 12), (4, 12), (8, 12)]
    resumed = embed_images(_items(images[:12]), BACKBONE, cache_dir=fresh_cache)
    assert resumed.n_cached == 8  # finished batches stay cached


def test_openvino_and_onnxruntime_agree(images: list[Image], fresh_cache: Path) -> None:
    # OpenVINO runs in float32 on every CPU (on AMX/AVX512-BF16 ones it would otherwise
    # pick bfloat16 and differ by ~7e-2 of the scale); measured in float32: ~1e-6.
    items = _items(images[:8])
    shutil.copytree(fresh_cache / "onnx", fresh_cache / "ov" / "onnx")
    ort = embed_images(items, BACKBONE, cache_dir=fresh_cache, runtime="onnxruntime")
    ov = embed_images(items, BACKBONE, cache_dir=fresh_cache / "ov", runtime="openvino")
    assert (ort.runtime, ov.runtime) == ("onnxruntime", "openvino")
    assert parity_error(ov.embeddings, ort.embeddings) <= PARITY_TOLERANCE


def test_parity_tolerance_catches_reduced_precision(
    images: list[Image], lite0: EmbeddingResult
) -> None:
    """The tolerance above is tight enough to see bfloat16 arithmetic, where the CPU has it."""
    import openvino as ov

    from backend.inference.preprocess import load_image
    from worker.ml.features import _cpu_runner

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bfloat16 arithmetic (AMX or AVX512-BF16)")
    assert lite0.feature_graph is not None
    graph = str(lite0.feature_graph)
    batch = np.stack([load_image(im.path, lite0.preprocess) for im in images[:8]])
    reference = lite0.embeddings[:8]
    assert parity_error(_cpu_runner(graph, "openvino", 2)(batch), reference) <= PARITY_TOLERANCE
    bf16 = _cpu_runner(graph, "openvino", 2, "bf16")(batch)
    assert parity_error(bf16, reference) > 10 * PARITY_TOLERANCE


def test_flipped_view_is_the_mirrored_input_cached_apart(
    images: list[Image], fresh_cache: Path
) -> None:
    from backend.inference.preprocess import load_image
    from worker.ml.features import _cpu_runner

    items = _items(images[:4])
    plain = embed_images(items, BACKBONE, cache_dir=fresh_cache)
    flipped = embed_images(items, BACKBONE, cache_dir=fresh_cache, hflip=True)
    assert flipped.n_computed == 4  # its own cache entries, not the plain view's
    assert embed_images(items, BACKBONE, cache_dir=fresh_cache, hflip=True).n_cached == 4
    assert embed_images(items, BACKBONE, cache_dir=fresh_cache).n_cached == 4
    assert np.abs(flipped.embeddings - plain.embeddings).max() > 1e-2
    # Exactly what an exported graph computes: the preprocessed image, last axis reversed.
    assert plain.feature_graph is not None
    run = _cpu_runner(str(plain.feature_graph), "onnxruntime", 2)
    mirrored = np.stack([load_image(im.path, plain.preprocess)[..., ::-1] for im in images[:4]])
    assert np.abs(run(np.ascontiguousarray(mirrored)) - flipped.embeddings).max() < 1e-4


def test_all_cached_builds_no_network(
    images: list[Image], lite0: EmbeddingResult, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm run reads the backbone's remembered facts: no timm model, no weights load."""
    import worker.ml.features as features

    built: list[str] = []
    real = features.create_backbone

    def counting(name: str, **kwargs: object):  # type: ignore[no-untyped-def]
        built.append(name)
        return real(name, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(features, "create_backbone", counting)
    warm = embed_images(_items(images[:50]), BACKBONE, cache_dir=cache_dir)
    assert (warm.n_cached, built) == (50, [])
    assert warm.preprocess == lite0.preprocess and warm.weights == lite0.weights
    assert np.array_equal(warm.embeddings, lite0.embeddings[:50])
    # Facts damaged or gone: the network is built once and they are written again.
    for facts in (cache_dir / "backbones").glob("*.json"):
        facts.write_text("{not json")
    again = embed_images(_items(images[:5]), BACKBONE, cache_dir=cache_dir)
    assert built == [BACKBONE] and again.preprocess == lite0.preprocess
    embed_images(_items(images[:5]), BACKBONE, cache_dir=cache_dir)
    assert built == [BACKBONE]


def test_precision_is_part_of_the_cache_key(images: list[Image], fresh_cache: Path) -> None:
    """bf16 features are cached apart from f32 ones; where the CPU has bfloat16 they
    differ a little and stay close in direction (cosine similarity)."""
    from worker.ml.features import cpu_has_bf16

    items = _items(images[:6])
    f32 = embed_images(items, BACKBONE, cache_dir=fresh_cache)
    bf16 = embed_images(items, BACKBONE, cache_dir=fresh_cache, precision="bf16")
    assert (bf16.n_computed, bf16.runtime, bf16.precision) == (6, "openvino", "bf16")
    again = embed_images(items, BACKBONE, cache_dir=fresh_cache, precision="bf16")
    assert again.n_cached == 6 and np.array_equal(again.embeddings, bf16.embeddings)
    a, b = f32.embeddings, bf16.embeddings
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99
    if cpu_has_bf16():
        assert np.abs(a - b).max() > 1e-3  # really computed in bfloat16
    with pytest.raises(ValueError, match="needs OpenVINO"):
        embed_images(
            items, BACKBONE, cache_dir=fresh_cache, runtime="onnxruntime", precision="bf16"
        )
