"""Fine-tuning pieces that need no training run: layer selection, the probe start, OOM
halving and auto's decision to fine-tune."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from worker.ml.finetune import (
    init_classifier,
    largest_fitting_batch,
    select_trainable,
    train_transform,
)
from worker.ml.heads import train_head
from worker.modes.auto import should_finetune


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    return timm.create_model("tf_efficientnet_lite0", num_classes=2).eval()


def test_train_layers_choose_what_trains(network: torch.nn.Module) -> None:
    total = sum(p.numel() for p in network.parameters())
    head = select_trainable(network, "head", 2)
    last_two = select_trainable(network, "last_blocks", 2)
    last_four = select_trainable(network, "last_blocks", 4)
    everything = select_trainable(network, "all", 2)
    assert head == 1280 * 2 + 2
    assert head < last_two < last_four < everything == total
    trained = {n for n, p in network.named_parameters() if p.requires_grad}
    assert "conv_stem.weight" in trained  # "all" left everything trainable
    select_trainable(network, "last_blocks", 2)
    trained = {n for n, p in network.named_parameters() if p.requires_grad}
    assert "classifier.weight" in trained and "conv_head.weight" in trained
    assert "conv_stem.weight" not in trained and "blocks.0.0.conv_dw.weight" not in trained


def test_classifier_starts_as_the_linear_probe(network: torch.nn.Module) -> None:
    images = torch.randn(12, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = network.forward_head(network.forward_features(images), pre_logits=True)
    labels = ["ants"] * 6 + ["bees"] * 6
    probe = train_head(features.numpy(), labels, "logreg")
    init_classifier(network, probe, 2)
    with torch.no_grad():
        proba = torch.softmax(network(images), 1).numpy()
    np.testing.assert_allclose(proba, probe.predict_proba(features.numpy()), atol=1e-5)


def test_out_of_memory_halves_the_batch_until_it_fits() -> None:
    tried: list[int] = []

    def step(size: int) -> None:
        tried.append(size)
        if size > 12:
            raise torch.OutOfMemoryError("CUDA out of memory")

    halved: list[int] = []
    assert largest_fitting_batch(step, 64, "cpu", halved.append) == 8
    assert tried == [64, 32, 16, 8] and halved == [32, 16, 8]


def test_other_errors_are_not_mistaken_for_out_of_memory() -> None:
    def step(size: int) -> None:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        largest_fitting_batch(step, 64, "cpu", lambda size: None)


def test_augmentation_levels_give_input_sized_tensors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from backend.inference.preprocess import Preprocess

    path = tmp_path / "x.jpg"
    Image.new("RGB", (300, 200), (200, 120, 40)).save(path)
    pp = Preprocess.from_crop_pct(96, 0.875, "bicubic", (0.5,) * 3, (0.5,) * 3)
    for level in ("none", "light", "strong"):
        x = train_transform(pp, level)(path)  # type: ignore[arg-type]
        assert tuple(x.shape) == (3, 96, 96) and x.dtype == torch.float32


@pytest.mark.parametrize(
    ("per_class", "gpu", "budget", "expected", "words"),
    [
        (150, True, None, True, "GPU"),
        (20, True, None, False, "smallest label has 20"),
        (150, False, None, False, "no GPU"),
        (20, False, 10_000.0, True, "time budget allows"),
        (150, True, 5.0, False, "time budget leaves 5 s"),
    ],
)
def test_auto_fine_tunes_only_when_worth_it(
    per_class: int, gpu: bool, budget: float | None, expected: bool, words: str
) -> None:
    tune, reason = should_finetune(per_class, gpu, estimate_s=300.0, epochs=5, budget_left_s=budget)
    assert tune is expected
    assert words in reason
