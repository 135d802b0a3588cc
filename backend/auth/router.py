from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from backend.auth import service
from backend.auth.cookies import clear_session_cookies, set_session_cookies
from backend.auth.schemas import (
    Credentials,
    LoginOut,
    NewTokenOut,
    ResetIn,
    SignupIn,
    SignupOut,
    TokenIn,
    TokenOut,
    UserOut,
)
from backend.auth.security import SESSION_COOKIE
from backend.deps import CurrentUser, SessionDep, SettingsDep, bearer_token
from backend.ratelimit import LimiterDep, client_address
from backend.schemas import AUTHED, OWNED, WRITE, PathId, errors

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    response_model=SignupOut,
    responses=errors(400, 403, 409, 413, 422, 429),
)
def signup(
    body: SignupIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    limiter: LimiterDep,
    response: Response,
) -> SignupOut:
    limiter.hit(limiter.signup_ip, client_address(request))
    user = service.sign_up(session, body.email, body.password, body.invite)
    token = service.issue_session(session, user, name="signup")
    set_session_cookies(response, token, settings)
    return SignupOut(token=token, user=UserOut.model_validate(user))


@router.post("/login", response_model=LoginOut, responses=errors(400, 401, 403, 413, 422, 429))
def login(
    body: Credentials,
    request: Request,
    settings: SettingsDep,
    limiter: LimiterDep,
    response: Response,
) -> LoginOut:
    """Attempts are limited per client address, failures per email (any email, so that a
    429 tells nothing about which have accounts)."""
    limiter.hit(limiter.login_ip, client_address(request))
    limiter.check(limiter.login_account, body.email)
    try:
        user, token = service.log_in(body.email, body.password)
    except service.InvalidCredentials:
        limiter.count(limiter.login_account, body.email)
        raise
    set_session_cookies(response, token, settings)
    return LoginOut(token=token, user=UserOut.model_validate(user))


@router.post("/reset", response_model=LoginOut, responses=errors(400, 403, 413, 422, 429))
def reset_password(
    body: ResetIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    limiter: LimiterDep,
    response: Response,
) -> LoginOut:
    """Choose a new password with an admin's reset link; signs you in."""
    limiter.hit(limiter.login_ip, client_address(request))
    user = service.reset_password(session, body.token, body.password)
    token = service.issue_session(session, user, name="reset")
    set_session_cookies(response, token, settings)
    return LoginOut(token=token, user=UserOut.model_validate(user))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 403))
def logout(request: Request, user: CurrentUser, session: SessionDep) -> Response:
    token = bearer_token(request) or request.cookies.get(SESSION_COOKIE)
    if token:
        service.revoke_token(session, token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookies(response)
    return response


@router.get("/me", response_model=UserOut, responses=errors(*AUTHED))
def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)


@router.get("/tokens", response_model=list[TokenOut], responses=errors(*AUTHED))
def list_tokens(request: Request, user: CurrentUser, session: SessionDep) -> list[TokenOut]:
    """Your live sessions and API tokens (never their values); ``current`` marks this one."""
    return [
        TokenOut.model_validate(row).model_copy(
            update={"current": row.id == request.state.token_id}
        )
        for row in service.list_tokens(session, user)
    ]


@router.post(
    "/tokens",
    status_code=status.HTTP_201_CREATED,
    response_model=NewTokenOut,
    responses=errors(*WRITE, 429),
)
def create_token(
    body: TokenIn, request: Request, user: CurrentUser, session: SessionDep, limiter: LimiterDep
) -> NewTokenOut:
    """An API token for scripts; its value is shown in this answer only."""
    limiter.hit(limiter.token_account, f"user:{user.id}")
    limiter.hit(limiter.token_account, f"ip:{client_address(request)}")
    row, token = service.issue_api_token(session, user, body.name, body.expires_in_days)
    return NewTokenOut(**TokenOut.model_validate(row).model_dump(), token=token)


@router.delete(
    "/tokens/{tid}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(*OWNED, 403)
)
def revoke_token(tid: PathId, user: CurrentUser, session: SessionDep) -> Response:
    service.revoke_token_id(session, user, tid)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
