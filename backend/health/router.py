from __future__ import annotations

from fastapi import APIRouter, status

from backend.deps import SessionDep, SettingsDep
from backend.health import service
from backend.health.schemas import AcceptSuggestionsIn, FixIn, FixOut, HealthOut, UndoOut
from backend.projects.deps import ProjectDep

router = APIRouter(prefix="/api/projects/{pid}/health", tags=["health"])


@router.get("", response_model=HealthOut)
def get_health(project: ProjectDep, session: SessionDep, settings: SettingsDep) -> HealthOut:
    return service.health_out(session, project, settings)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=HealthOut)
def start_check(project: ProjectDep, session: SessionDep, settings: SettingsDep) -> HealthOut:
    service.check_examinable(session, project)
    service.request_check(session, project.id)
    return service.health_out(session, project, settings)


@router.post("/fixes", response_model=FixOut)
def fix_images(body: FixIn, project: ProjectDep, session: SessionDep) -> FixOut:
    return service.apply_fix(session, project, body)


@router.post("/fixes/{eid}/undo", response_model=UndoOut)
def undo_fix(eid: int, project: ProjectDep, session: SessionDep, recheck: bool = True) -> UndoOut:
    return service.undo_edit(session, project, eid, recheck=recheck)


@router.post("/suggestions/accept", response_model=FixOut)
def accept_suggestions(
    body: AcceptSuggestionsIn, project: ProjectDep, session: SessionDep
) -> FixOut:
    return service.accept_suggestions(session, project, body)
