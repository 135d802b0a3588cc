"""Serve a run's exported ONNX model in the API process (onnxruntime; no torch here)."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING

from fastapi import UploadFile

from backend.config import Settings
from backend.errors import InvalidInput
from backend.images.decode import NotAPicture, read_picture
from backend.runs.schemas import BatchPredictOut, PredictOut

if TYPE_CHECKING:
    from backend.inference.predictor import OnnxClassifier

MAX_BATCH = 256


@lru_cache(maxsize=8)
def _classifier(path: str, mtime_ns: int) -> OnnxClassifier:
    from backend.inference.predictor import OnnxClassifier  # onnxruntime loads on first use

    return OnnxClassifier(Path(path))


def classifier_for(path: Path) -> OnnxClassifier:
    return _classifier(str(path), path.stat().st_mtime_ns)


def _is_zip(upload: UploadFile) -> bool:
    head = upload.file.read(4)
    upload.file.seek(0)
    return head == b"PK\x03\x04"


class _Limited:
    def __init__(self, source: IO[bytes], limit: int) -> None:
        self.source, self.left = source, limit

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size < 0 else min(size, self.left)
        chunk = self.source.read(size)
        self.left -= len(chunk)
        return chunk


@contextmanager
def _sources(uploads: list[UploadFile], settings: Settings) -> Iterator[list[tuple[str, Path]]]:
    """Every uploaded picture (zips expanded) as a file on disk, removed afterwards."""
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.tmp_dir) as folder:
        files: list[tuple[str, Path]] = []
        for upload in uploads:
            if not _is_zip(upload):
                files.append((upload.filename or "image", Path(folder) / str(len(files))))
                _copy_or_mark(upload.file, files[-1][1], settings)
                continue
            try:
                archive = zipfile.ZipFile(upload.file)
            except zipfile.BadZipFile as exc:
                raise InvalidInput("The zip file is damaged and cannot be opened.") from exc
            for info in archive.infolist():
                base = info.filename.rsplit("/", 1)[-1]
                if info.is_dir() or not base or base.startswith(".") or "__MACOSX" in info.filename:
                    continue
                if len(files) >= MAX_BATCH:
                    raise InvalidInput(f"At most {MAX_BATCH} pictures can be predicted at once.")
                files.append((info.filename, Path(folder) / str(len(files))))
                with archive.open(info) as member:
                    _copy_or_mark(member, files[-1][1], settings)
        if len(files) > MAX_BATCH:
            raise InvalidInput(f"At most {MAX_BATCH} pictures can be predicted at once.")
        yield files


def _copy_or_mark(source: IO[bytes], target: Path, settings: Settings) -> None:
    limit = settings.max_image_bytes
    with target.open("wb") as out:
        shutil.copyfileobj(_Limited(source, limit + 1), out)
    if target.stat().st_size > limit:
        target.write_bytes(b"")  # read_picture then refuses it as not a picture


def predict_uploads(
    model_path: Path, uploads: list[UploadFile], settings: Settings
) -> PredictOut | BatchPredictOut:
    """One picture answers ``{label, probabilities}``; several (or a zip) answer a list."""
    classifier = classifier_for(model_path)
    single = len(uploads) == 1 and not _is_zip(uploads[0])
    results: list[PredictOut] = []
    rejected: list[dict[str, str]] = []
    with _sources(uploads, settings) as files:
        for name, path in files:
            try:
                read_picture(path, settings.max_image_pixels)
            except NotAPicture as exc:
                if single:
                    raise InvalidInput(exc.reason) from exc
                rejected.append({"filename": name, "reason": exc.reason})
                continue
            answer = classifier.predict([path])[0]
            results.append(PredictOut(filename=name, **answer))
    if single:
        return results[0]
    return BatchPredictOut(results=results, rejected=rejected)
