"""Serve a run's exported ONNX model in the API process (onnxruntime; no torch here)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING

from fastapi import UploadFile

from backend.archives import Entry, Refused, RefusedEntry, ZipReader, is_hidden, too_large
from backend.config import Settings
from backend.errors import InvalidInput
from backend.images.decode import NotAPicture, PixelBudget, read_picture
from backend.runs.schemas import BatchPredictOut, PredictOut
from backend.storage import FileTooLarge, ImageStore

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


def _already_open(fileobj: IO[bytes]) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    return lambda: nullcontext(fileobj)


def _hidden(entry: Entry | RefusedEntry) -> bool:
    return isinstance(entry, Entry) and any(map(is_hidden, entry.parts))


@contextmanager
def _pictures(
    uploads: list[UploadFile], settings: Settings
) -> Iterator[list[Entry | RefusedEntry]]:
    """Every uploaded file and zip entry to predict (hidden files left out), unread yet."""
    reader = ZipReader(settings)
    with ExitStack() as zips:
        pictures: list[Entry | RefusedEntry] = []
        for upload in uploads:
            name = upload.filename or "image"
            if not _is_zip(upload):
                pictures.append(Entry(name, (name,), _already_open(upload.file)))
                continue
            try:
                entries = zips.enter_context(reader.entries(upload.file))
            except Refused as exc:
                raise InvalidInput(f"{name}: {exc.reason}") from exc
            pictures += [e for e in entries if not _hidden(e)]
        if len(pictures) > MAX_BATCH:
            raise InvalidInput(f"At most {MAX_BATCH} pictures can be predicted at once.")
        yield pictures


def _predict_one(
    classifier: OnnxClassifier,
    entry: Entry | RefusedEntry,
    store: ImageStore,
    settings: Settings,
    pixels: PixelBudget,
) -> PredictOut:
    """Unpack one picture to the data dir's tmp, check it, classify it, remove it."""
    if isinstance(entry, RefusedEntry):
        raise Refused(entry.reason)
    try:
        with entry.open() as source, store.stage(source, settings.max_image_bytes) as staged:
            read_picture(staged.path, settings.max_image_pixels, pixels)
            return PredictOut(filename=entry.name, **classifier.predict([staged.path])[0])
    except FileTooLarge as exc:
        raise Refused(too_large(settings.max_image_bytes)) from exc
    except NotAPicture as exc:
        raise Refused(exc.reason) from exc


def predict_uploads(
    model_path: Path, uploads: list[UploadFile], settings: Settings
) -> PredictOut | BatchPredictOut:
    """One picture answers ``{label, probabilities}``; several (or a zip) answer a list.
    Pictures are unpacked and classified one at a time, so the disk holds one at most."""
    classifier = classifier_for(model_path)
    single = len(uploads) == 1 and not _is_zip(uploads[0])
    store = ImageStore(settings)
    pixels = PixelBudget(settings.max_request_pixels)
    results: list[PredictOut] = []
    rejected: list[dict[str, str]] = []
    with _pictures(uploads, settings) as pictures:
        for picture in pictures:
            try:
                results.append(_predict_one(classifier, picture, store, settings, pixels))
            except Refused as exc:
                if single:
                    raise InvalidInput(exc.reason) from exc
                rejected.append({"filename": picture.name, "reason": exc.reason})
    if single:
        return results[0]
    return BatchPredictOut(results=results, rejected=rejected)
