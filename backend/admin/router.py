from __future__ import annotations

from fastapi import APIRouter, Response, status

from backend.admin import service
from backend.admin.deps import AccountDep, AdminUser
from backend.admin.schemas import AccountOut, InviteIn, LinkOut
from backend.deps import SessionDep
from backend.schemas import OWNED, WRITE, PathId, errors

router = APIRouter(prefix="/api/admin", tags=["admin"])


@router.get("/users", response_model=list[AccountOut], responses=errors(401, 403))
def list_accounts(_: AdminUser, session: SessionDep) -> list[AccountOut]:
    return [AccountOut.model_validate(u) for u in service.list_accounts(session)]


@router.post("/users/{uid}/disable", response_model=AccountOut, responses=errors(*OWNED, 403, 409))
def disable_account(account: AccountDep, admin: AdminUser, session: SessionDep) -> AccountOut:
    return AccountOut.model_validate(service.disable(session, admin, account))


@router.post("/users/{uid}/enable", response_model=AccountOut, responses=errors(*OWNED, 403))
def enable_account(account: AccountDep, session: SessionDep) -> AccountOut:
    return AccountOut.model_validate(service.enable(session, account))


@router.post(
    "/users/{uid}/reset",
    status_code=status.HTTP_201_CREATED,
    response_model=LinkOut,
    responses=errors(*OWNED, 403),
)
def reset_account(account: AccountDep, admin: AdminUser, session: SessionDep) -> LinkOut:
    """Sign the user out everywhere; the answer's ``path`` lets them choose a new password."""
    link, secret = service.reset(session, admin, account)
    return LinkOut.model_validate(link).model_copy(update={"path": service.link_path(link, secret)})


@router.get("/invites", response_model=list[LinkOut], responses=errors(401, 403))
def list_invites(_: AdminUser, session: SessionDep) -> list[LinkOut]:
    return [LinkOut.model_validate(link) for link in service.pending_invites(session)]


@router.post(
    "/invites",
    status_code=status.HTTP_201_CREATED,
    response_model=LinkOut,
    responses=errors(*WRITE, 409),
)
def create_invite(body: InviteIn, admin: AdminUser, session: SessionDep) -> LinkOut:
    """A one-time sign-up link for one email; its ``path`` is shown in this answer only."""
    link, secret = service.invite(session, admin, body.email)
    return LinkOut.model_validate(link).model_copy(update={"path": service.link_path(link, secret)})


@router.delete(
    "/invites/{iid}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(*OWNED, 403)
)
def withdraw_invite(iid: PathId, _: AdminUser, session: SessionDep) -> Response:
    service.withdraw_invite(session, iid)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
