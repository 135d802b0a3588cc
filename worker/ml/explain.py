"""Where a trained classifier looked: Grad-CAM heatmaps from the ``grad-cam`` package.

The run's TorchScript file holds every weight; an eager copy of the same network is
rebuilt around them (hooks, which Grad-CAM needs, do not attach to a traced module):
a linear run is the pooled backbone plus its dense head, a fine-tune run the whole timm
model. Grad-CAM then weighs the last convolution's activations by the gradient of the
chosen class's logit.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from backend.inference.preprocess import Preprocess, load_image
from worker.ml.errors import MLError


class NotExplainable(MLError):
    """This model cannot be explained with Grad-CAM (the message says why)."""


class Logits(nn.Module):
    """The classifier without its softmax: Grad-CAM follows a class's logit."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _dense_head(state: dict[str, torch.Tensor]) -> nn.Module:
    """The head's Sequential (Linear layers, ReLU between them) from its weights' names."""
    indices = sorted({int(key.split(".")[1]) for key in state if key.startswith("head.")})
    modules: list[nn.Module] = []
    for position in range(indices[-1] + 1):
        if position in indices:
            weight = state[f"head.{position}.weight"]
            modules.append(nn.Linear(weight.shape[1], weight.shape[0]))
        else:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def load_classifier(torchscript: Path, backbone: str) -> tuple[nn.Module, list[str], Preprocess]:
    """An eager copy of a run's classifier (logits out), its labels and preprocessing."""
    import timm

    from worker.ml.backbones import create_backbone
    from worker.ml.export import torchscript_without_deprecation

    extra = {"labels": "", "preprocess": ""}
    with torchscript_without_deprecation():
        traced = torch.jit.load(str(torchscript), map_location="cpu", _extra_files=extra)
    labels = list(json.loads(extra["labels"]))
    preprocess = Preprocess.from_dict(json.loads(extra["preprocess"]))
    state = {key: value for key, value in traced.state_dict().items()}
    if any(key.startswith("head.") for key in state):
        network, _, _ = create_backbone(backbone, pretrained=False)
        model = Logits(network, _dense_head(state))
    else:  # fine-tuned: the timm model carries its own classifier
        model = Logits(timm.create_model(backbone, num_classes=len(labels)), nn.Identity())
    model.load_state_dict(state)
    return model.eval(), labels, preprocess


def last_convolution(model: nn.Module) -> nn.Module:
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise NotExplainable(
            "Heatmaps are available for convolutional backbones; this one has no convolution "
            "layer to look at."
        )
    return convolutions[-1]


def gradcam_overlay(
    model: nn.Module, preprocess: Preprocess, image_path: Path, class_index: int
) -> bytes:
    """A PNG of what the network saw (the centre crop) with the Grad-CAM heatmap of
    ``class_index`` blended over it."""
    batch = torch.from_numpy(load_image(image_path, preprocess)).unsqueeze(0)
    with GradCAM(model=model, target_layers=[last_convolution(model)]) as cam:
        heat = cam(input_tensor=batch, targets=[ClassifierOutputTarget(class_index)])[0]
    mean = np.asarray(preprocess.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(preprocess.std, dtype=np.float32)[:, None, None]
    seen = np.clip(batch[0].numpy() * std + mean, 0, 1).transpose(1, 2, 0)
    overlay = show_cam_on_image(seen, heat, use_rgb=True, image_weight=0.55)
    buffer = io.BytesIO()
    Image.fromarray(overlay).save(buffer, "PNG")
    return buffer.getvalue()
