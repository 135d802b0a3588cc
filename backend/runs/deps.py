from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from backend.deps import CurrentUser, SessionDep, SettingsDep
from backend.runs import service
from backend.runs.models import Run
from backend.schemas import PathId


def owned_run(rid: PathId, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> Run:
    run = service.get_run(session, user, rid)
    service.fail_if_worker_lost(session, run, settings)
    return run


RunDep = Annotated[Run, Depends(owned_run)]
