"""Images of a project: listing, bulk relabel/resplit, deletion, files on disk."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from backend.auth.models import User
from backend.config import Settings
from backend.db import after_commit, session_scope
from backend.errors import NotFound
from backend.health.models import kept_for_undo
from backend.images.ingest import ensure_label
from backend.images.models import Image
from backend.images.schemas import (
    MAX_BULK_IDS,
    ImageFilter,
    ImageOut,
    ImagePage,
    ImagePatch,
    ImageQuery,
    MatchingIds,
)
from backend.projects.models import Label, Project, label_key
from backend.storage import ImageStore

logger = logging.getLogger(__name__)


class ImageNotFound(NotFound):
    detail = "Image not found."


class ImageFileMissing(NotFound):
    detail = "The file of this image is missing from the server's storage."


def get_image(session: Session, user: User, image_id: int) -> Image:
    image = session.scalar(
        select(Image)
        .join(Project, Project.id == Image.project_id)
        .where(Image.id == image_id, Project.owner_id == user.id)
    )
    if image is None:
        raise ImageNotFound()
    return image


def _where(session: Session, project: Project, query: ImageFilter) -> list[Any] | None:
    """The filters as conditions on the image row (a label name is looked up once, so the
    page and its count are index ranges); None when they can match nothing."""
    where: list[Any] = [Image.project_id == project.id]
    if query.label:
        label_id = session.scalar(
            select(Label.id).where(
                Label.project_id == project.id, Label.name_key == label_key(query.label)
            )
        )
        if label_id is None:
            return None
        where.append(Image.label_id == label_id)
    if query.unlabeled:
        where.append(Image.label_id.is_(None))
    if query.split == "unassigned":
        where.append(Image.split.is_(None))
    elif query.split:
        where.append(Image.split == query.split)
    return where


def matching_ids(session: Session, project: Project, query: ImageFilter) -> MatchingIds:
    """Ids of every image the filters match, up to what one bulk request takes."""
    where = _where(session, project, query)
    if where is None:
        return MatchingIds(ids=[], total=0)
    total = session.scalar(select(func.count(Image.id)).where(*where)) or 0
    ids = session.scalars(select(Image.id).where(*where).order_by(Image.id).limit(MAX_BULK_IDS))
    return MatchingIds(ids=list(ids), total=total)


def list_images(session: Session, project: Project, query: ImageQuery) -> ImagePage:
    """One page in id order and the total."""
    where = _where(session, project, query)
    if where is None:
        return ImagePage(items=[], total=0)
    total = session.scalar(select(func.count(Image.id)).where(*where)) or 0
    images = session.scalars(
        select(Image).where(*where).order_by(Image.id).limit(query.limit).offset(query.offset)
    )
    return ImagePage(items=[image_out(image) for image in images], total=total)


def image_out(image: Image) -> ImageOut:
    return ImageOut(
        id=image.id,
        filename=image.filename,
        label=image.label.name if image.label else None,
        label_id=image.label_id,
        split=image.split,
        split_source=image.split_source,
        width=image.width,
        height=image.height,
        size_bytes=image.size_bytes,
        format=image.format,
        created_at=image.created_at,
        file_url=f"/api/images/{image.id}/file",
        thumbnail_url=f"/api/images/{image.id}/thumbnail",
    )


def update_images(session: Session, project: Project, patch: ImagePatch) -> int:
    """Relabel and/or resplit images of ``project``; only the fields sent change."""
    ids = _project_image_ids(session, project, patch.ids)
    values: dict[str, object] = {}
    if "label" in patch.model_fields_set:
        values["label_id"] = ensure_label(session, project, patch.label).id if patch.label else None
    if "split" in patch.model_fields_set:
        values["split"] = patch.split
        values["split_source"] = "user" if patch.split else None
    if values:
        session.execute(
            update(Image).where(Image.id.in_(ids)).values(**values),
            execution_options={"synchronize_session": False},
        )
        session.expire_all()
    return len(ids)


def delete_images(
    session: Session, settings: Settings, project: Project, ids: list[int], keep_files: bool = False
) -> int:
    """Delete images of ``project``; their files too unless ``keep_files`` (an undoable
    deletion, backend/health/service.py) or another image uses them."""
    ids = _project_image_ids(session, project, ids)
    shas = set(session.scalars(select(Image.sha256).where(Image.id.in_(ids))))
    session.execute(
        delete(Image).where(Image.id.in_(ids)), execution_options={"synchronize_session": False}
    )
    session.expire_all()
    if not keep_files:
        _remove_blobs_after_commit(session, settings, shas)
    return len(ids)


def delete_image(session: Session, settings: Settings, image: Image) -> None:
    sha = image.sha256
    session.delete(image)
    session.flush()
    _remove_blobs_after_commit(session, settings, {sha})


def file_path(settings: Settings, image: Image) -> Path:
    return _existing(ImageStore(settings).blob_path(image.sha256))


def thumbnail_path(settings: Settings, image: Image) -> Path:
    return _existing(ImageStore(settings).thumbnail_path(image.sha256))


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise ImageFileMissing()
    return path


def _project_image_ids(session: Session, project: Project, ids: Collection[int]) -> list[int]:
    """The distinct ``ids``, all of which must be images of ``project``."""
    wanted = sorted(set(ids))
    found = set(
        session.scalars(
            select(Image.id).where(Image.project_id == project.id, Image.id.in_(wanted))
        )
    )
    missing = [i for i in wanted if i not in found]
    if missing:
        shown = ", ".join(str(i) for i in missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise ImageNotFound(f"These images are not in this project: {shown}.")
    return wanted


def _remove_blobs_after_commit(session: Session, settings: Settings, shas: set[str]) -> None:
    """Once the deletion is committed, drop the bytes no image (of any project) still uses."""

    def remove() -> None:
        try:
            with session_scope() as fresh:
                used = set(fresh.scalars(select(Image.sha256).where(Image.sha256.in_(shas))))
                used |= kept_for_undo(fresh)  # a fix's deletion may still be undone
            store = ImageStore(settings)
            for sha in shas - used:
                store.remove(sha)
        except Exception:  # the deletion stands; a leftover blob only costs disk space
            logger.exception("could not remove image files after deletion")

    if shas:
        after_commit(session, remove)
