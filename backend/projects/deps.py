from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from backend.deps import CurrentUser, SessionDep
from backend.projects import service
from backend.projects.models import Label, Project
from backend.schemas import PathId


def owned_project(pid: PathId, user: CurrentUser, session: SessionDep) -> Project:
    return service.get_project(session, user, pid)


ProjectDep = Annotated[Project, Depends(owned_project)]


def project_label(lid: PathId, project: ProjectDep, session: SessionDep) -> Label:
    return service.get_label(session, project, lid)


LabelDep = Annotated[Label, Depends(project_label)]
