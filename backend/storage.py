"""Files on disk: content-addressed image blobs, thumbnails, artifacts; atomic writes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from backend.config import Settings


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; it is renamed into place only on success."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_atomic(final: Path, source: IO[bytes]) -> None:
    with atomic_path(final) as tmp, tmp.open("wb") as out:
        while chunk := source.read(1024 * 1024):
            out.write(chunk)


class ImageStore:
    """Image bytes stored once per SHA-256, fanned out into 256 folders."""

    def __init__(self, settings: Settings) -> None:
        self.images_dir = settings.images_dir
        self.thumbnails_dir = settings.thumbnails_dir

    def blob_path(self, sha256: str) -> Path:
        return self.images_dir / sha256[:2] / sha256

    def thumbnail_path(self, sha256: str) -> Path:
        return self.thumbnails_dir / sha256[:2] / f"{sha256}.jpg"

    def has(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file() and self.thumbnail_path(sha256).is_file()

    def remove(self, sha256: str) -> None:
        self.blob_path(sha256).unlink(missing_ok=True)
        self.thumbnail_path(sha256).unlink(missing_ok=True)
