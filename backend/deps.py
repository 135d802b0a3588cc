"""Dependencies shared by every router: settings, the database session, the current user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from backend.auth.cookies import RENEW_STATE
from backend.auth.models import User
from backend.auth.security import CSRF_HEADER, SESSION_COOKIE, csrf_matches
from backend.auth.service import use_token
from backend.config import Settings, get_settings
from backend.db import session_scope
from backend.errors import Forbidden, Unauthorized

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session() -> Iterator[Session]:
    """One transaction per request: commit when the handler returns, roll back if it raises."""
    with session_scope() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def token_user(request: Request, session: Session, token: str, from_cookie: bool) -> User | None:
    """The user of a presented token; a session cookie that slid is renewed on the answer."""
    use = use_token(token)
    user = None if use is None else session.get(User, use.user_id)
    if use is None or user is None:
        return None
    if from_cookie and use.slid:
        setattr(request.state, RENEW_STATE, token)  # SessionCookieRenewal re-sends the cookies
    request.state.user = user
    request.state.token_id = use.token_id
    return user


def get_current_user(request: Request, session: SessionDep, settings: SettingsDep) -> User:
    """Bearer token first; otherwise the session cookie, with CSRF checked on writes."""
    token = bearer_token(request)
    from_cookie = token is None
    if token is None:
        token = request.cookies.get(SESSION_COOKIE)
        if (
            token
            and request.method not in SAFE_METHODS
            and not csrf_matches(token, settings.secret_key, request.headers.get(CSRF_HEADER))
        ):
            raise Forbidden("Missing or wrong CSRF token; reload the page and try again.")
    if not token:
        raise Unauthorized()
    user = token_user(request, session, token, from_cookie)
    if user is None:
        raise Unauthorized("Your session has expired or the token is not valid. Log in again.")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
