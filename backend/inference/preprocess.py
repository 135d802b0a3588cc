"""Image preprocessing shared by featurization, prediction and exported bundles.

Imports only numpy and PIL: the API process and the bundle's ``predict.py`` (which
embeds this file's source) must not need torch. It reproduces timm's eval transform
(resize shorter side, center crop, scale to [0, 1], normalize).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps

ImageSource = str | Path | IO[bytes]
_EXIF_ORIENTATION = 0x0112

_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class Preprocess:
    """Eval-time preprocessing of one backbone: what the network expects as input."""

    input_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLING:
            raise ValueError(f"unsupported interpolation {self.interpolation!r}")
        if self.resize_size < self.input_size:
            raise ValueError("resize_size must be at least input_size")

    @classmethod
    def from_crop_pct(
        cls,
        input_size: int,
        crop_pct: float,
        interpolation: str,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> Preprocess:
        """Build from timm's data config terms (resize = floor(input_size / crop_pct))."""
        return cls(
            input_size=input_size,
            resize_size=math.floor(input_size / crop_pct),
            interpolation=interpolation,
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (lists instead of tuples)."""
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        """Inverse of :meth:`to_dict`."""
        mean, std = d["mean"], d["std"]
        return cls(
            input_size=int(d["input_size"]),
            resize_size=int(d["resize_size"]),
            interpolation=str(d["interpolation"]),
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
        )


def open_rgb(source: ImageSource, draft_size: int | None = None) -> Image.Image:
    """Decode an image as upright RGB (EXIF orientation applied, first frame of animations).

    With ``draft_size``, JPEGs are decoded at a reduced scale that still keeps the shorter
    side at least ``draft_size`` pixels: DCT-domain downscaling is several times faster
    than a full decode followed by a resize.
    """
    with Image.open(source) as img:
        if draft_size is not None and img.format == "JPEG":
            # PIL only picks a scale whose result is >= the requested size on both sides.
            img.draft("RGB", (draft_size, draft_size))
        img.seek(0)
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
        # convert() returns a loaded copy, detached from the file about to be closed.
        rgb = img.convert("RGB")
    if orientation != 1:
        rgb = ImageOps.exif_transpose(rgb)
    return rgb


def load_image(source: ImageSource, pp: Preprocess) -> np.ndarray:
    """Decode and preprocess one image into a (3, H, W) float32 normalized array."""
    img = open_rgb(source, draft_size=pp.resize_size)
    w, h = img.size
    # Same arithmetic as torchvision's Resize(int): shorter side -> resize_size ...
    if w <= h:
        new_w, new_h = pp.resize_size, int(pp.resize_size * h / w)
    else:
        new_w, new_h = int(pp.resize_size * w / h), pp.resize_size
    # ... and as its CenterCrop's rounding.
    top = round((new_h - pp.input_size) / 2.0)
    left = round((new_w - pp.input_size) / 2.0)
    # Resample only the source region that survives the crop: same pixels (PIL's filter
    # still reads the neighbours outside the box), about half the work.
    sx, sy = w / new_w, h / new_h
    # min() absorbs float round-off that PIL would reject as "box exceeds image".
    box = (
        left * sx,
        top * sy,
        min(w, (left + pp.input_size) * sx),
        min(h, (top + pp.input_size) * sy),
    )
    size = (pp.input_size, pp.input_size)
    img = img.resize(size, _RESAMPLING[pp.interpolation], box=box)
    pixels = np.asarray(img)  # (H, W, 3) uint8
    # (x / 255 - mean) / std as one multiply-add per channel, written straight into the
    # (3, H, W) result: no float HWC copy and no transpose.
    out = np.empty((3, pp.input_size, pp.input_size), dtype=np.float32)
    for c in range(3):
        np.multiply(pixels[..., c], np.float32(1.0 / (255.0 * pp.std[c])), out=out[c])
        out[c] += np.float32(-pp.mean[c] / pp.std[c])
    return out
