from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status
from fastapi.responses import FileResponse

from backend.deps import SessionDep, SettingsDep
from backend.health.service import request_check_if_examinable
from backend.images import service, uploads
from backend.images.decode import CONTENT_TYPES
from backend.images.deps import ImageDep
from backend.images.ingest import UploadSource, ingest_files
from backend.images.schemas import (
    DeletedOut,
    ImageFilter,
    ImageIds,
    ImageOut,
    ImagePage,
    ImagePatch,
    ImageQuery,
    IngestOut,
    MatchingIds,
    UpdatedOut,
    UploadOut,
)
from backend.images.uploads import UPLOAD_KEY_PATTERN, upload_key
from backend.projects.deps import ProjectDep
from backend.projects.schemas import LABEL_MAX_CHARS
from backend.schemas import NAME_PATTERN, OWNED, WRITE, errors, files_of

SPLIT_PATTERN = "^ *([Tt][Rr][Aa][Ii][Nn]|[Vv][Aa][Ll]|[Tt][Ee][Ss][Tt])? *$"

router = APIRouter(tags=["images"])

# Served bytes never run as a page and stay in the user's own cache (nosniff, like every
# response, comes from backend/headers.py).
FILE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; sandbox; frame-ancestors 'none'",
    "Cache-Control": "private, max-age=86400",
}


@router.post(
    "/api/projects/{pid}/images",
    response_model=IngestOut,
    form_limits={"max_files": 10_000},
    responses=errors(*OWNED, *WRITE, 409, 507),
)
def upload_images(
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
    files: Annotated[
        list[UploadFile], File(min_length=1, description="Pictures and/or .zip files")
    ],
    label: Annotated[
        str,
        Form(
            max_length=LABEL_MAX_CHARS,
            description="label for files whose folders name none",
            json_schema_extra={"pattern": f"^ *$|{NAME_PATTERN}"},
        ),
    ] = "",
    split: Annotated[
        str, Form(description="train, val or test", json_schema_extra={"pattern": SPLIT_PATTERN})
    ] = "",
    upload: Annotated[
        str,
        Form(
            max_length=64,
            description="the page's key of one drop: its requests form one upload in the history",
            json_schema_extra={"pattern": UPLOAD_KEY_PATTERN},
        ),
    ] = "",
) -> IngestOut:
    sources = [UploadSource(upload.filename or "upload", upload.file) for upload in files]
    report = ingest_files(session, settings, project, sources, label=label, split=split)
    uploads.record_batch(session, project, upload_key(upload), report)
    if report.accepted:
        request_check_if_examinable(session, project.id)
    return IngestOut.model_validate(report)


@router.get("/api/projects/{pid}/uploads", response_model=list[UploadOut], responses=errors(*OWNED))
def upload_history(project: ProjectDep, session: SessionDep) -> list[UploadOut]:
    """The project's latest uploads, newest first: what became of their files, by label
    and split."""
    return uploads.history(session, project)


@router.get("/api/projects/{pid}/images", response_model=ImagePage, responses=errors(*OWNED))
def list_images(
    project: ProjectDep, session: SessionDep, query: Annotated[ImageQuery, Query()]
) -> ImagePage:
    return service.list_images(session, project, query)


@router.get("/api/projects/{pid}/images/ids", response_model=MatchingIds, responses=errors(*OWNED))
def matching_image_ids(
    project: ProjectDep, session: SessionDep, query: Annotated[ImageFilter, Query()]
) -> MatchingIds:
    """Every image matching the filters (not one page): "select all N" sends these ids to the
    bulk relabel, move or delete."""
    return service.matching_ids(session, project, query)


@router.patch(
    "/api/projects/{pid}/images", response_model=UpdatedOut, responses=errors(*OWNED, *WRITE, 409)
)
def update_images(body: ImagePatch, project: ProjectDep, session: SessionDep) -> UpdatedOut:
    return UpdatedOut(updated=service.update_images(session, project, body))


@router.post(
    "/api/projects/{pid}/images/delete", response_model=DeletedOut, responses=errors(*OWNED, *WRITE)
)
def delete_images(
    body: ImageIds, project: ProjectDep, session: SessionDep, settings: SettingsDep
) -> DeletedOut:
    return DeletedOut(deleted=service.delete_images(session, settings, project, body.ids))


@router.get("/api/images/{iid}", response_model=ImageOut, responses=errors(*OWNED))
def get_image(image: ImageDep) -> ImageOut:
    return service.image_out(image)


@router.get(
    "/api/images/{iid}/file",
    response_class=FileResponse,
    responses={200: files_of(CONTENT_TYPES.values(), "the verified picture"), **errors(*OWNED)},
)
def image_file(image: ImageDep, settings: SettingsDep) -> FileResponse:
    return FileResponse(
        service.file_path(settings, image),
        media_type=CONTENT_TYPES.get(image.format, "application/octet-stream"),
        filename=image.filename,
        content_disposition_type="inline",
        headers=FILE_HEADERS,
    )


@router.get(
    "/api/images/{iid}/thumbnail",
    response_class=FileResponse,
    responses={200: files_of(["image/jpeg"], "a JPEG thumbnail"), **errors(*OWNED)},
)
def image_thumbnail(image: ImageDep, settings: SettingsDep) -> FileResponse:
    return FileResponse(
        service.thumbnail_path(settings, image), media_type="image/jpeg", headers=FILE_HEADERS
    )


@router.delete(
    "/api/images/{iid}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(*OWNED, 403)
)
def delete_image(image: ImageDep, session: SessionDep, settings: SettingsDep) -> Response:
    service.delete_image(session, settings, image)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
