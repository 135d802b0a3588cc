from __future__ import annotations

from fastapi import APIRouter, status

from backend.deps import SessionDep, SettingsDep
from backend.health import service
from backend.health.schemas import (
    AcceptSuggestionsIn,
    DeleteIn,
    FixIn,
    FixOut,
    HealthOut,
    UndoOut,
)
from backend.projects.deps import ProjectDep
from backend.schemas import OWNED, WRITE, PathId, errors

router = APIRouter(prefix="/api/projects/{pid}/health", tags=["health"])


@router.get("", response_model=HealthOut, responses=errors(*OWNED))
def get_health(project: ProjectDep, session: SessionDep, settings: SettingsDep) -> HealthOut:
    return service.health_out(session, project, settings)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=HealthOut,
    responses=errors(*OWNED, 403, 409),
)
def start_check(project: ProjectDep, session: SessionDep, settings: SettingsDep) -> HealthOut:
    service.check_examinable(session, project)
    service.request_check(session, project.id)
    return service.health_out(session, project, settings)


@router.post("/fixes", response_model=FixOut, responses=errors(*OWNED, *WRITE, 409))
def fix_images(body: FixIn, project: ProjectDep, session: SessionDep) -> FixOut:
    return service.apply_fix(session, project, body)


@router.post("/fixes/delete", response_model=FixOut, responses=errors(*OWNED, *WRITE))
def delete_fix(
    body: DeleteIn, project: ProjectDep, session: SessionDep, settings: SettingsDep
) -> FixOut:
    """Delete images; unlike ``POST /api/projects/{pid}/images/delete`` this can be undone."""
    return service.delete_fix(session, settings, project, body)


@router.post("/fixes/{eid}/undo", response_model=UndoOut, responses=errors(*OWNED, 403, 409))
def undo_fix(
    eid: PathId,
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
    recheck: bool = True,
) -> UndoOut:
    return service.undo_edit(session, settings, project, eid, recheck=recheck)


@router.post("/suggestions/accept", response_model=FixOut, responses=errors(*OWNED, *WRITE, 409))
def accept_suggestions(
    body: AcceptSuggestionsIn, project: ProjectDep, session: SessionDep
) -> FixOut:
    return service.accept_suggestions(session, project, body)
