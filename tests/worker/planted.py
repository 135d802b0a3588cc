"""Damaged data sets made from real images, for the data doctor's tests and benchmark."""

from __future__ import annotations

import hashlib
import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

COPIES = 20
FLIP_FRACTION = 0.05


def near_copy(path: Path, seed: int) -> bytes:
    """The issue's near duplicate: resized to 70 %, 10 % cropped away (a random 90 % window
    of each side), mirrored left to right, saved as JPEG quality 60."""
    rng = random.Random(seed)
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    w, h = image.size
    image = image.resize((max(1, round(w * 0.7)), max(1, round(h * 0.7))))
    w, h = image.size
    cw, ch = round(w * 0.9), round(h * 0.9)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    image = image.crop((x, y, x + cw, y + ch)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=60)
    return buffer.getvalue()


@dataclass(frozen=True)
class PlantedCopy:
    source: int  # index of the original
    sha256: str
    path: Path
    label: str
    split: str  # the other split than the original's


def plant_copies(
    originals: list[tuple[Path, str, str]], folder: Path, n: int = COPIES, seed: int = 0
) -> list[PlantedCopy]:
    """Near copies of ``n`` random originals ((path, label, split)), each put in the other
    split (train <-> val), written to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    chosen = random.Random(seed).sample(range(len(originals)), n)
    copies = []
    for k, index in enumerate(chosen):
        path, label, split = originals[index]
        data = near_copy(path, seed * 1000 + k)
        out = folder / f"copy{k}-{path.stem}.jpg"
        out.write_bytes(data)
        other = "val" if split == "train" else "train"
        copies.append(PlantedCopy(index, hashlib.sha256(data).hexdigest(), out, label, other))
    return copies


def flip_labels(
    labels: list[str], splits: list[str], seed: int, fraction: float = FLIP_FRACTION
) -> tuple[list[str], set[int]]:
    """``fraction`` of the training labels changed to another label at random (seeded)."""
    rng = np.random.default_rng(seed)
    train = [i for i, s in enumerate(splits) if s == "train"]
    flipped = {int(i) for i in rng.choice(train, round(fraction * len(train)), replace=False)}
    names = sorted(set(labels))
    noisy = list(labels)
    for i in flipped:
        noisy[i] = str(rng.choice([n for n in names if n != labels[i]]))
    return noisy, flipped
