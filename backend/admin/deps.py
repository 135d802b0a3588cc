from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from backend.admin import service
from backend.auth.models import User
from backend.deps import CurrentUser, SessionDep
from backend.errors import Forbidden
from backend.schemas import PathId


def admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("Only an admin of this server can do this.")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


def account(uid: PathId, _: AdminUser, session: SessionDep) -> User:
    return service.get_account(session, uid)


AccountDep = Annotated[User, Depends(account)]
