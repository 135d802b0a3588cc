from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from backend.deps import CurrentUser, SessionDep
from backend.runs import service
from backend.runs.models import Run
from backend.schemas import PathId


def owned_run(rid: PathId, user: CurrentUser, session: SessionDep) -> Run:
    return service.get_run(session, user, rid)


RunDep = Annotated[Run, Depends(owned_run)]
