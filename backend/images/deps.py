from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from backend.deps import CurrentUser, SessionDep
from backend.images import service
from backend.images.models import Image
from backend.schemas import PathId


def owned_image(iid: PathId, user: CurrentUser, session: SessionDep) -> Image:
    return service.get_image(session, user, iid)


ImageDep = Annotated[Image, Depends(owned_image)]
