"""Splits, data checks and metrics."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from worker.ml.errors import NotEnoughData
from worker.ml.evaluate import check_trainable, compute_metrics, stratified_split


def _dataset() -> tuple[list[str], list[str]]:
    keys = [f"img{i}" for i in range(60)]
    labels = ["ant"] * 40 + ["bee"] * 17 + ["wasp"] * 2 + ["moth"]
    return keys, labels


def test_split_is_deterministic_whatever_the_order() -> None:
    keys, labels = _dataset()
    first = stratified_split(keys, labels, seed=3)
    pairs = list(zip(keys, labels, strict=True))
    random.Random(1).shuffle(pairs)
    again = stratified_split([k for k, _ in pairs], [lab for _, lab in pairs], seed=3)
    assert first == again
    assert stratified_split(keys, labels, seed=4) != first


def test_split_is_stratified() -> None:
    keys, labels = _dataset()
    split = stratified_split(keys, labels, val_fraction=0.2)
    val = {lab: 0 for lab in labels}
    for key, lab in zip(keys, labels, strict=True):
        val[lab] += split[key] == "val"
    assert val == {"ant": 8, "bee": 3, "wasp": 1, "moth": 0}


def test_split_keeps_a_training_image_in_every_class() -> None:
    split = stratified_split(["a", "b"], ["x", "x"], val_fraction=0.9)
    assert sorted(split.values()) == ["train", "val"]


def test_refuses_a_single_label() -> None:
    with pytest.raises(NotEnoughData, match=r"At least 2 labels.*'ants'"):
        check_trainable({"ants": 10, "bees": 0})


def test_names_the_labels_with_too_few_images() -> None:
    with pytest.raises(NotEnoughData, match=r"'bees' \(1\), 'wasps' \(1\)"):
        check_trainable({"ants": 10, "bees": 1, "wasps": 1})
    check_trainable({"ants": 2, "bees": 2})


def test_metrics_are_correct_and_json_ready() -> None:
    labels = ["ant", "bee", "wasp"]
    y = ["ant", "ant", "bee", "bee", "wasp", "wasp"]
    proba = np.array(
        [[0.9, 0.1, 0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0, 1, 0], [0, 0, 1], [0.6, 0.2, 0.2]]
    )
    m = compute_metrics(y, proba, labels)
    json.dumps(m)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert m["per_class"]["bee"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    )
    assert m["confusion_matrix"] == {"labels": labels, "matrix": [[1, 1, 0], [0, 2, 0], [1, 0, 1]]}
    expected_loss = -np.mean(np.log([0.9, 0.2, 0.8, 1.0, 1.0, 0.2]))
    assert m["log_loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert m["macro_f1"] == pytest.approx(np.mean([0.5, 0.8, 2 / 3]))
