"""Files on disk: content-addressed image blobs, thumbnails, artifacts; atomic writes."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from backend.config import Settings

CHUNK_BYTES = 1024 * 1024


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


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_atomic(final: Path, source: IO[bytes]) -> None:
    with atomic_path(final) as tmp, tmp.open("wb") as out:
        while chunk := source.read(CHUNK_BYTES):
            out.write(chunk)


class FileTooLarge(Exception):
    """A streamed file went past the byte limit it was staged with."""


@dataclass(frozen=True)
class StagedFile:
    """Bytes copied to a private temporary file, with their SHA-256 and size."""

    path: Path
    sha256: str
    size: int


class ImageStore:
    """Image bytes stored once per SHA-256, fanned out into 256 folders."""

    def __init__(self, settings: Settings) -> None:
        self.images_dir = settings.images_dir
        self.thumbnails_dir = settings.thumbnails_dir
        self.tmp_dir = settings.tmp_dir

    def blob_path(self, sha256: str) -> Path:
        return self.images_dir / sha256[:2] / sha256

    def thumbnail_path(self, sha256: str) -> Path:
        return self.thumbnails_dir / sha256[:2] / f"{sha256}.jpg"

    def has(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file() and self.thumbnail_path(sha256).is_file()

    @contextmanager
    def stage(self, source: IO[bytes], max_bytes: int) -> Iterator[StagedFile]:
        """Copy ``source`` in chunks to a temporary file while hashing it; removed on exit.

        Reads at most ``max_bytes + 1`` bytes, so a lying or endless source stops early
        with ``FileTooLarge``.
        """
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="upload.", suffix=".part", dir=self.tmp_dir)
        path = Path(tmp)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(min(CHUNK_BYTES, max_bytes + 1 - size)):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FileTooLarge()
                    digest.update(chunk)
                    out.write(chunk)
            yield StagedFile(path, digest.hexdigest(), size)
        finally:
            path.unlink(missing_ok=True)

    def put(self, staged: StagedFile, thumbnail_jpeg: bytes) -> None:
        """Keep a staged file under its hash, thumbnail first, each renamed into place whole.

        The staged file is moved even when the blob exists: identical bytes, and a blob
        removed meanwhile by a concurrent delete comes back.
        """
        write_atomic(self.thumbnail_path(staged.sha256), io.BytesIO(thumbnail_jpeg))
        blob = self.blob_path(staged.sha256)
        blob.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.path, blob)

    def remove(self, sha256: str) -> None:
        self.blob_path(sha256).unlink(missing_ok=True)
        self.thumbnail_path(sha256).unlink(missing_ok=True)
