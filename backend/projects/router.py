from __future__ import annotations

from fastapi import APIRouter, Response, status

from backend.deps import CurrentUser, SessionDep
from backend.projects import service
from backend.projects.deps import LabelDep, ProjectDep
from backend.projects.schemas import (
    LabelIn,
    LabelOut,
    LabelPatch,
    ProjectDetail,
    ProjectIn,
    ProjectOut,
)
from backend.schemas import AUTHED, OWNED, WRITE, errors

router = APIRouter(prefix="/api/projects", tags=["projects"])


@router.get("", response_model=list[ProjectOut], responses=errors(*AUTHED))
def list_projects(user: CurrentUser, session: SessionDep) -> list[ProjectOut]:
    return service.list_projects(session, user)


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=ProjectDetail, responses=errors(*WRITE)
)
def create_project(body: ProjectIn, user: CurrentUser, session: SessionDep) -> ProjectDetail:
    project = service.create_project(session, user, body.name)
    return service.project_detail(session, project)


@router.get("/{pid}", response_model=ProjectDetail, responses=errors(*OWNED))
def get_project(project: ProjectDep, session: SessionDep) -> ProjectDetail:
    return service.project_detail(session, project)


@router.patch("/{pid}", response_model=ProjectDetail, responses=errors(*OWNED, *WRITE))
def rename_project(body: ProjectIn, project: ProjectDep, session: SessionDep) -> ProjectDetail:
    service.rename_project(session, project, body.name)
    return service.project_detail(session, project)


@router.delete("/{pid}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(*OWNED, 403))
def delete_project(project: ProjectDep, session: SessionDep) -> Response:
    service.delete_project(session, project)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{pid}/labels", response_model=list[LabelOut], responses=errors(*OWNED))
def list_labels(project: ProjectDep, session: SessionDep) -> list[LabelOut]:
    return service.project_detail(session, project).labels


@router.post(
    "/{pid}/labels",
    status_code=status.HTTP_201_CREATED,
    response_model=LabelOut,
    responses=errors(*OWNED, *WRITE, 409),
)
def create_label(body: LabelIn, project: ProjectDep, session: SessionDep) -> LabelOut:
    label = service.create_label(session, project, body.name, body.color)
    return LabelOut(id=label.id, name=label.name, color=label.color)


@router.patch("/{pid}/labels/{lid}", response_model=LabelOut, responses=errors(*OWNED, *WRITE, 409))
def update_label(
    body: LabelPatch, label: LabelDep, project: ProjectDep, session: SessionDep
) -> LabelOut:
    service.update_label(session, project, label, body.name, body.color)
    return next(
        out for out in service.project_detail(session, project).labels if out.id == label.id
    )


@router.delete(
    "/{pid}/labels/{lid}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(*OWNED, 403)
)
def delete_label(label: LabelDep, session: SessionDep) -> Response:
    service.delete_label(session, label)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
