"""A linear probe on real images reaches the accuracy the product promises."""

from __future__ import annotations

import pytest

from tests.worker.conftest import Image
from worker.ml.evaluate import check_trainable, compute_metrics
from worker.ml.features import EmbeddingResult
from worker.ml.heads import train_head


@pytest.mark.slow
def test_lite0_logreg_on_hymenoptera(images: list[Image], lite0: EmbeddingResult) -> None:
    train = [i for i, im in enumerate(images) if im.split == "train"]
    val = [i for i, im in enumerate(images) if im.split == "val"]
    labels = [im.label for im in images]
    check_trainable({lab: labels.count(lab) for lab in set(labels)})
    head = train_head(lite0.embeddings[train], [labels[i] for i in train], "logreg")
    metrics = compute_metrics(
        [labels[i] for i in val], head.predict_proba(lite0.embeddings[val]), head.classes
    )
    # 145/153 = 94.8 % with C chosen by cross-validation on the training split; 95 % would
    # be 146/153, reached only by picking C on the validation set itself.
    assert metrics["accuracy"] >= 0.94, metrics
    assert metrics["per_class"]["ants"]["support"] == 70
