"""Leftovers of an interrupted upload: part files, and blobs or thumbnails no image row uses.

An API process killed mid-ingest (kill -9, OOM, power) may leave ``upload.*.part`` files and
spooled request bodies in the tmp dir, ``.*.part`` files of atomic writes, and image files
whose row never committed.
:func:`remove_orphans` deletes those older than a grace period (in the data dir, and in the
bucket when images live on object storage) (a file younger than that may
belong to an upload in progress in another API process); it runs at every API start and
as ``autodl gc``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from backend.config import Settings, get_settings
from backend.db import session_scope
from backend.health.models import kept_for_undo
from backend.images.models import Image
from backend.storage import S3Storage, get_storage, storage_for

log = logging.getLogger(__name__)


@dataclass
class Removed:
    part_files: int = 0
    blobs: int = 0
    thumbnails: int = 0

    def __str__(self) -> str:
        return (
            f"{self.part_files} part files, {self.blobs} image files and {self.thumbnails} "
            "thumbnails that no image uses"
        )


def _files(folder: Path, pattern: str) -> Iterator[Path]:
    if folder.is_dir():
        yield from (p for p in folder.glob(pattern) if p.is_file())


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def remove_orphans(settings: Settings, grace_s: float) -> Removed:
    cutoff = time.time() - grace_s
    removed = Removed()
    parts = [
        *_files(settings.tmp_dir, "*"),  # staged uploads and spooled request bodies
        *_files(settings.images_dir, "*/.*.part"),
        *_files(settings.thumbnails_dir, "*/.*.part"),
    ]
    for path in parts:
        if _older(path, cutoff):
            path.unlink(missing_ok=True)
            removed.part_files += 1
    with session_scope() as session:
        used = set(session.scalars(select(Image.sha256).distinct())) | kept_for_undo(session)
    for path in _files(settings.images_dir, "??/*"):
        if not path.name.startswith(".") and path.name not in used and _older(path, cutoff):
            path.unlink(missing_ok=True)
            removed.blobs += 1
    for path in _files(settings.thumbnails_dir, "??/*.jpg"):
        if path.stem not in used and _older(path, cutoff):
            path.unlink(missing_ok=True)
            removed.thumbnails += 1
    storage = get_storage() if settings is get_settings() else storage_for(settings)
    if isinstance(storage, S3Storage):
        for prefix, kind in (("images/", "blobs"), ("thumbnails/", "thumbnails")):
            for key in storage.keys_older_than(prefix, cutoff):
                name = key.rsplit("/", 1)[-1].removesuffix(".jpg")
                if name not in used:
                    storage.delete(key)
                    setattr(removed, kind, getattr(removed, kind) + 1)
    if removed.part_files or removed.blobs or removed.thumbnails:
        log.warning("removed the leftovers of interrupted uploads: %s", removed)
    return removed
