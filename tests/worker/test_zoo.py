"""Every zoo entry builds (random weights, no download) with timm's preprocessing for its tag."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from backend.runs.zoo import ZOO, BackboneSpec, weights_availability
from worker.ml.backbones import create_backbone

MODERN = [
    "convnextv2_nano",
    "convnextv2_tiny",
    "vit_small_patch14_dinov2",
    "vit_base_patch14_dinov2",
    "vit_base_patch16_siglip_224",
    "vit_base_patch16_clip_224",
    "eva02_small_patch14_224",
    "eva02_base_patch14_224",
]


def test_the_zoo_offers_modern_feature_extractors_to_download_and_none_offline(
    tmp_path: Path,
) -> None:
    assert set(MODERN) <= set(ZOO)
    for name in MODERN:
        assert weights_availability(name, tmp_path, offline=False) == "download"
        assert weights_availability(name, tmp_path, offline=True) == "unavailable"


@pytest.mark.slow
@pytest.mark.parametrize("spec", list(ZOO.values()), ids=list(ZOO))
def test_zoo_entry_builds_with_the_preprocessing_of_its_pretrained_tag(spec: BackboneSpec) -> None:
    import timm
    from timm.models import get_pretrained_cfg

    # The zoo's tag must be timm's default for the architecture: the network is built by
    # its bare name, so a different tag would get another tag's preprocessing.
    assert get_pretrained_cfg(spec.name).tag == spec.pretrained_tag
    cfg = get_pretrained_cfg(f"{spec.name}.{spec.pretrained_tag}")
    assert cfg.crop_mode == "center"

    model, preprocess, info = create_backbone(spec.name, pretrained=False)
    assert info.source == "scratch"
    assert preprocess.input_size == spec.input_size == cfg.input_size[-1]
    assert preprocess.resize_size == math.floor(spec.input_size / cfg.crop_pct)
    assert preprocess.mean == pytest.approx(cfg.mean) and preprocess.std == pytest.approx(cfg.std)
    assert preprocess.interpolation == cfg.interpolation
    # The catalogue counts the ImageNet-1k classifier where the weights have one.
    with torch.device("meta"):
        listed = timm.create_model(spec.name, num_classes=1000 if spec.imagenet_top1 else 0)
    assert spec.params_m == pytest.approx(
        sum(p.numel() for p in listed.parameters()) / 1e6, abs=0.01
    )
    with torch.no_grad():
        features = model(torch.zeros(1, 3, spec.input_size, spec.input_size))
    # Pooled features, after any pre-logits layer (mobilenetv3's conv_head: 960 -> 1280).
    assert features.shape == (1, model.head_hidden_size)
