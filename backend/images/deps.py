from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from backend.deps import CurrentUser, SessionDep
from backend.images import service
from backend.images.models import Image


def owned_image(iid: int, user: CurrentUser, session: SessionDep) -> Image:
    return service.get_image(session, user, iid)


ImageDep = Annotated[Image, Depends(owned_image)]
