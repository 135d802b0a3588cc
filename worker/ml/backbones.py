"""The backbone zoo: a curated registry in timm's style and ``create_backbone``.

Any timm model name is accepted; the zoo adds figures people choose by. ImageNet top-1
and parameter counts come from timm's ``results/results-imagenet.csv`` for the default
pretrained tag (evaluated at that row's test resolution, noted where it differs); weights
pretrained without an ImageNet-1k classifier (DINOv2, SigLIP, EVA-02 MIM) have no top-1,
and their parameter count is the feature extractor's.
torch and timm are imported only when a model is built, so listing the zoo is cheap.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING

from backend.inference.preprocess import Preprocess
from backend.runs.zoo import ZOO, BackboneSpec, get_backbone_spec, list_backbones
from worker.ml.errors import UnknownBackbone
from worker.ml.weights import (
    SCRATCH_SEED,
    SCRATCH_WEIGHTS,
    WeightsInfo,
    load_weights,
    resolve_weights,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "BackboneSpec",
    "check_backbone_name",
    "create_backbone",
    "get_backbone_spec",
    "list_backbones",
]


def check_backbone_name(name: str) -> None:
    """Raise UnknownBackbone, with close matches, unless timm knows ``name``."""
    import timm

    if get_backbone_spec(name) is None and not timm.is_model(name):
        candidates = list(dict.fromkeys([*ZOO, *timm.list_models()]))
        raise UnknownBackbone(name, difflib.get_close_matches(name, candidates, n=3))


def create_backbone(
    name: str,
    *,
    pretrained: bool = True,
    weights_dir: Path | None = None,
    num_classes: int = 0,
    offline: bool | None = None,
) -> tuple[nn.Module, Preprocess, WeightsInfo]:
    """Build ``name`` in eval mode with its weights and its eval preprocessing.

    With ``num_classes=0`` (the default) the module returns pooled features. Without
    pretrained weights it is initialised from a fixed seed, so features stay cacheable.
    """
    import timm
    import torch
    from timm.data import resolve_model_data_config

    check_backbone_name(name)
    if pretrained:
        info = resolve_weights(name, weights_dir, offline=offline)
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
        load_weights(model, name, info)
    else:
        with torch.random.fork_rng():
            torch.manual_seed(SCRATCH_SEED)
            model = timm.create_model(name, pretrained=False, num_classes=num_classes)
        info = SCRATCH_WEIGHTS
    model.eval()
    cfg = resolve_model_data_config(model)
    if cfg.get("crop_mode", "center") != "center":
        # Our preprocessing implements timm's default center crop only.
        raise ValueError(f"{name}: crop_mode {cfg['crop_mode']!r} is not supported")
    preprocess = Preprocess.from_crop_pct(
        input_size=int(cfg["input_size"][-1]),
        crop_pct=float(cfg["crop_pct"]),
        interpolation=str(cfg["interpolation"]),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
    )
    return model, preprocess, info
