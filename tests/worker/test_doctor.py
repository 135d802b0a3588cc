"""The data doctor on real hymenoptera images: flipped labels, planted copies, the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.worker.conftest import BACKBONE, Image
from tests.worker.planted import COPIES, flip_labels, plant_copies
from worker.ml import doctor
from worker.ml.doctor import NotExaminable, Picture, centred_unit, examine, neighbours_twice
from worker.ml.features import EmbeddingResult, embed_images
from worker.ml.signatures import Signature, picture_signatures

INPUT_SIZE = 224


@pytest.fixture(scope="session")
def signatures(images: list[Image], cache_dir: Path) -> list[Signature | None]:
    found, _ = picture_signatures([(im.sha256, im.path) for im in images], cache_dir)
    return found


def pictures(images: list[Image], labels: list[str | None] | None = None) -> list[Picture]:
    labels = labels if labels is not None else [im.label for im in images]
    return [
        Picture(i, label, im.split, 500, 375)
        for i, (im, label) in enumerate(zip(images, labels, strict=True))
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flipped_labels_are_found_first(
    seed: int, images: list[Image], lite0: EmbeddingResult, signatures: list[Signature | None]
) -> None:
    noisy, flipped = flip_labels([im.label for im in images], [im.split for im in images], seed)
    report = examine(pictures(images, noisy), lite0.embeddings, signatures, INPUT_SIZE)

    k = len(flipped)
    assert k == 12  # 5 % of the 245 training images
    top = [issue.image_id for issue in report.label_issues[:k]]
    hits = len(set(top) & flipped)
    precision, recall = hits / max(1, len(top)), hits / k
    assert precision >= 0.7 and recall >= 0.7, (seed, precision, recall)
    for issue in report.label_issues[:k]:
        if issue.image_id in flipped:  # the suggestion is the label before the flip
            assert issue.suggested_label == images[issue.image_id].label
            assert issue.given_label != issue.suggested_label
    scores = [issue.score for issue in report.label_issues]
    assert scores == sorted(scores, reverse=True)
    finding = next(f for f in report.findings if f.kind == "label_errors")
    assert finding.count == len(report.label_issues)


@pytest.fixture(params=["exact", "approximate"])
def search(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The neighbour search both ways: exact (the all-pairs matrix) and the inverted-file
    index that projects above doctor.EXACT_SEARCH_MAX images use (forced here)."""
    if request.param == "approximate":
        monkeypatch.setattr(doctor, "EXACT_SEARCH_MAX", 0)
    return str(request.param)


def test_planted_copies_across_splits_are_all_found_as_leakage(
    search: str,
    images: list[Image],
    lite0: EmbeddingResult,
    signatures: list[Signature | None],
    cache_dir: Path,
    tmp_path: Path,
) -> None:
    originals = [(im.path, im.label, im.split) for im in images]
    copies = plant_copies(originals, tmp_path / "copies")
    embedded = embed_images([(c.sha256, c.path) for c in copies], BACKBONE, cache_dir=cache_dir)
    copy_signatures, _ = picture_signatures([(c.sha256, c.path) for c in copies], tmp_path)
    everything = pictures(images) + [
        Picture(len(images) + k, c.label, c.split, 350, 262) for k, c in enumerate(copies)
    ]
    report = examine(
        everything,
        np.vstack([lite0.embeddings, embedded.embeddings]),
        [*signatures, *copy_signatures],
        INPUT_SIZE,
    )

    planted = {frozenset((c.source, len(images) + k)) for k, c in enumerate(copies)}
    found = {frozenset(group.image_ids) for group in report.duplicates}
    assert planted <= found, f"missed: {planted - found}"
    # No pair among the 398 distinct originals is taken for a copy.
    assert found == planted
    assert all(g.across_splits and not g.across_labels for g in report.duplicates)
    assert all(g.kind == "near" for g in report.duplicates)
    leakage = next(f for f in report.findings if f.kind == "leakage")
    assert leakage.severity == "error" and leakage.count == COPIES


def test_the_clean_set_fits_the_backbone_and_shuffled_labels_do_not(
    search: str, images: list[Image], lite0: EmbeddingResult, signatures: list[Signature | None]
) -> None:
    clean = examine(pictures(images), lite0.embeddings, signatures, INPUT_SIZE)
    assert clean.domain_fit["verdict"] == "good"
    assert clean.domain_fit["cv_accuracy"] > 0.9
    assert clean.domain_fit["knn_agreement"] > 0.9
    assert clean.duplicates == []

    shuffled = [im.label for im in images]
    np.random.default_rng(0).shuffle(shuffled)
    noise = examine(pictures(images, shuffled), lite0.embeddings, signatures, INPUT_SIZE)
    assert noise.domain_fit["verdict"] == "poor"
    assert noise.domain_fit["cv_accuracy"] < 0.65
    assert any("Fine-tune" in advice for advice in noise.domain_fit["advice"])


def test_suggestions_for_unlabelled_images_are_mostly_right_when_confident(
    images: list[Image], lite0: EmbeddingResult, signatures: list[Signature | None]
) -> None:
    hidden = {i for i, im in enumerate(images) if im.split == "val"}
    labels = [None if i in hidden else im.label for i, im in enumerate(images)]
    report = examine(pictures(images, labels), lite0.embeddings, signatures, INPUT_SIZE)

    assert {s.image_id for s in report.suggestions} == hidden
    confident = [s for s in report.suggestions if s.confidence >= 0.9]
    assert len(confident) >= len(hidden) / 2
    right = sum(s.suggested_label == images[s.image_id].label for s in confident)
    assert right / len(confident) >= 0.95
    # Most useful first: the first suggestions are the uncertain ones.
    first, last = report.suggestions[:20], report.suggestions[-20:]
    assert np.mean([s.confidence for s in first]) < np.mean([s.confidence for s in last])
    unlabelled = next(f for f in report.findings if f.kind == "unlabelled")
    assert unlabelled.count == len(hidden)


def test_imbalance_few_images_small_pictures_and_the_need_for_labels(
    images: list[Image], lite0: EmbeddingResult, signatures: list[Signature | None]
) -> None:
    bees = [i for i, im in enumerate(images) if im.label == "bees"]
    keep = [i for i, im in enumerate(images) if im.label == "ants"] + bees[:8]
    chosen = [images[i] for i in keep]
    pics = [
        Picture(i, im.label, im.split, 100 if i < 3 else 500, 80 if i < 3 else 375)
        for i, im in enumerate(chosen)
    ]
    report = examine(pics, lite0.embeddings[keep], [signatures[i] for i in keep], INPUT_SIZE)
    kinds = {f.kind: f for f in report.findings}

    assert kinds["class_imbalance"].severity == "error"  # 199 ants against 8 bees
    assert "“ants”" in kinds["class_imbalance"].message
    assert kinds["few_images"].count == 1 and "“bees” (8)" in kinds["few_images"].message
    assert kinds["small_images"].image_ids == [0, 1, 2]
    needed = report.labels_needed["labels"]
    assert needed["bees"]["add"] >= 12 and needed["ants"]["add"] == 0
    assert "more of “bees”" in report.labels_needed["message"]


def test_grayscale_pictures_among_colour_ones_are_named(
    images: list[Image], lite0: EmbeddingResult, signatures: list[Signature | None]
) -> None:
    report = examine(pictures(images), lite0.embeddings, signatures, INPUT_SIZE)
    gray = [i for i, s in enumerate(signatures) if s is not None and s.is_grayscale]
    finding = next(f for f in report.findings if f.kind == "grayscale_mix")
    assert 0 < finding.count == len(gray) < 20
    assert finding.image_ids == gray[: len(finding.image_ids)]


def test_one_label_or_no_images_is_not_a_report(
    images: list[Image], lite0: EmbeddingResult, signatures: list[Signature | None]
) -> None:
    ants = [i for i, im in enumerate(images) if im.label == "ants"]
    with pytest.raises(NotExaminable, match="at least 2 labels"):
        examine(
            pictures([images[i] for i in ants]),
            lite0.embeddings[ants],
            [signatures[i] for i in ants],
            INPUT_SIZE,
        )
    with pytest.raises(NotExaminable, match="no images"):
        examine([], np.zeros((0, 1280)), [], INPUT_SIZE)


def test_approximate_neighbours_are_the_exact_ones_on_real_embeddings(
    lite0: EmbeddingResult,
) -> None:
    Z = centred_unit(lite0.embeddings)
    rows = np.arange(0, len(Z), 2)
    exact = neighbours_twice(Z, 3, rows, 10, exact_max=len(Z))
    approx = neighbours_twice(Z, 3, rows, 10, exact_max=0)
    own = np.arange(len(Z))
    assert not (approx.index == own[:, None]).any()
    assert not (approx.within_index == np.arange(len(rows))[:, None]).any()
    best = np.einsum("ij,ij->i", Z, Z[approx.index[:, 0]])
    assert np.allclose(approx.sims[:, 0], best, atol=1e-4)
    assert (np.diff(approx.sims, axis=1) <= 1e-6).all()
    # 16 of 39 cells probed: most nearest neighbours are still the true ones.
    assert np.mean(approx.index[:, 0] == exact.index[:, 0]) >= 0.9
    assert np.mean(approx.within_index[:, 0] == exact.within_index[:, 0]) >= 0.9
