from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from backend.auth import service
from backend.auth.schemas import Credentials, LoginOut, SignupIn, SignupOut, UserOut
from backend.auth.security import CSRF_COOKIE, SESSION_COOKIE, csrf_token_for
from backend.config import Settings
from backend.deps import CurrentUser, SessionDep, SettingsDep, bearer_token

router = APIRouter(prefix="/api/auth", tags=["auth"])


def set_session_cookies(response: Response, token: str, settings: Settings) -> None:
    common = {
        "max_age": settings.session_max_age_s,
        "secure": settings.cookie_secure,
        "samesite": "lax",
        "path": "/",
    }
    response.set_cookie(SESSION_COOKIE, token, httponly=True, **common)  # type: ignore[arg-type]
    response.set_cookie(  # readable by the page's scripts, which echo it in X-CSRF-Token
        CSRF_COOKIE,
        csrf_token_for(token, settings.secret_key),
        httponly=False,
        **common,  # type: ignore[arg-type]
    )


@router.post("/signup", status_code=status.HTTP_201_CREATED, response_model=SignupOut)
def signup(body: SignupIn, session: SessionDep, settings: SettingsDep, response: Response):
    user = service.create_user(session, body.email, body.password)
    token = service.issue_token(session, user, name="signup")
    set_session_cookies(response, token, settings)
    return SignupOut(token=token, user=UserOut.model_validate(user))


@router.post("/login", response_model=LoginOut)
def login(body: Credentials, session: SessionDep, settings: SettingsDep, response: Response):
    user = service.authenticate(session, body.email, body.password)
    token = service.issue_token(session, user, name="login")
    set_session_cookies(response, token, settings)
    return LoginOut(token=token, user=UserOut.model_validate(user))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, user: CurrentUser, session: SessionDep) -> Response:
    token = bearer_token(request) or request.cookies.get(SESSION_COOKIE)
    if token:
        service.revoke_token(session, token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.get("/me", response_model=UserOut)
def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)
