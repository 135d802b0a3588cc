"""Serve a run's exported ONNX model in the API process (onnxruntime; no torch here)."""

from __future__ import annotations

import io
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING

from fastapi import UploadFile

from backend.config import Settings
from backend.errors import InvalidInput
from backend.runs.schemas import BatchPredictOut, PredictOut

if TYPE_CHECKING:
    from backend.inference.predictor import OnnxClassifier

MAX_BATCH = 256


class NotAPicture(InvalidInput):
    detail = "This file is not a picture autodl can read (JPEG, PNG, WebP, GIF, BMP or TIFF)."


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


def _zip_members(upload: UploadFile, settings: Settings) -> list[tuple[str, IO[bytes]]]:
    try:
        archive = zipfile.ZipFile(upload.file)
    except zipfile.BadZipFile as exc:
        raise InvalidInput("The zip file is damaged and cannot be opened.") from exc
    members = []
    for info in archive.infolist():
        name = info.filename
        base = name.rsplit("/", 1)[-1]
        if info.is_dir() or not base or base.startswith(".") or "__MACOSX" in name:
            continue
        if len(members) >= MAX_BATCH:
            raise InvalidInput(f"At most {MAX_BATCH} pictures can be predicted at once.")
        if info.file_size > settings.max_image_bytes:
            raise InvalidInput(f"{name} is larger than the {settings.max_image_bytes} byte limit.")
        with archive.open(info) as member:
            members.append((name, io.BytesIO(member.read(settings.max_image_bytes + 1))))
    return members


def predict_uploads(
    model_path: Path, uploads: list[UploadFile], settings: Settings
) -> PredictOut | BatchPredictOut:
    classifier = classifier_for(model_path)
    single = len(uploads) == 1 and not _is_zip(uploads[0])
    sources: list[tuple[str, IO[bytes]]] = []
    for upload in uploads:
        if _is_zip(upload):
            sources.extend(_zip_members(upload, settings))
        else:
            sources.append((upload.filename or "image", upload.file))
    if len(sources) > MAX_BATCH:
        raise InvalidInput(f"At most {MAX_BATCH} pictures can be predicted at once.")

    results: list[PredictOut] = []
    rejected: list[dict[str, str]] = []
    for name, source in sources:
        try:
            answer = classifier.predict([source], max_pixels=settings.max_image_pixels)[0]
        except Exception as exc:
            if single:
                raise NotAPicture() from exc
            rejected.append({"filename": name, "reason": NotAPicture.detail})
            continue
        results.append(PredictOut(filename=name, **answer))
    if single:
        return results[0]
    return BatchPredictOut(results=results, rejected=rejected)
