"""Shared fixtures of the worker tests: the real hymenoptera images and their embeddings."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from worker.ml.features import EmbeddingResult, embed_images

BACKBONE = "tf_efficientnet_lite0"


@dataclass(frozen=True)
class Image:
    sha256: str
    path: Path
    label: str
    split: str


@pytest.fixture(scope="session")
def images(hymenoptera: Path) -> list[Image]:
    """Every file of the dataset, with the label and split its folders give."""
    found = []
    for path in sorted(hymenoptera.glob("*/*/*")):
        split, label = path.parent.parent.name, path.parent.name
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        found.append(Image(sha, path, label, split))
    assert len(found) == 398
    return found


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Embedding and ONNX cache shared by the session (featurize once)."""
    return tmp_path_factory.mktemp("autodl-cache")


@pytest.fixture
def fresh_cache(cache_dir: Path, tmp_path: Path, lite0: EmbeddingResult) -> Path:
    """An empty embedding cache that reuses the session's exported backbone graph."""
    shutil.copytree(cache_dir / "onnx", tmp_path / "cache" / "onnx")
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def lite0(images: list[Image], cache_dir: Path) -> EmbeddingResult:
    """tf_efficientnet_lite0 embeddings of the whole dataset, in ``images`` order."""
    items = [(im.sha256, im.path) for im in images]
    return embed_images(items, BACKBONE, cache_dir=cache_dir)
