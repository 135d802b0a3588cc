"""Users and their tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.auth.models import ApiToken, TokenKind, User
from backend.auth.security import hash_password, new_token, token_digest, verify_password
from backend.config import get_settings
from backend.db import utcnow
from backend.errors import AppError, Conflict, NotFound


class InvalidCredentials(AppError):
    status = 401
    detail = "That email and password do not match an account."


class EmailTaken(Conflict):
    detail = "An account with this email already exists. Log in instead."


class TokenNotFound(NotFound):
    detail = "Token not found."


def create_user(session: Session, email: str, password: str) -> User:
    if session.scalar(select(User).where(User.email == email)) is not None:
        raise EmailTaken()
    user = User(email=email, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, email: str, password: str) -> User:
    user = session.scalar(select(User).where(User.email == email))
    if user is None or not verify_password(user.password_hash, password):
        raise InvalidCredentials()
    return user


def _issue(
    session: Session, user: User, kind: TokenKind, name: str, lifetime: timedelta
) -> tuple[ApiToken, str]:
    token = new_token()
    now = utcnow()
    row = ApiToken(
        user_id=user.id,
        token_hash=token_digest(token),
        name=name,
        kind=kind,
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    session.flush()
    return row, token


def issue_session(session: Session, user: User, name: str) -> str:
    """A browser/CLI session token; it lives ``AUTODL_SESSION_MAX_AGE_S`` past its last use.
    The plain value is returned once and never stored."""
    lifetime = timedelta(seconds=get_settings().session_max_age_s)
    return _issue(session, user, TokenKind.SESSION, name, lifetime)[1]


def issue_api_token(session: Session, user: User, name: str, days: int) -> tuple[ApiToken, str]:
    """An API token for scripts that expires ``days`` from now, used or not."""
    return _issue(session, user, TokenKind.API, name, timedelta(days=days))


def _refresh_interval(max_age_s: int) -> timedelta:
    # Writing on every request would turn each read into a write; a tenth of the lifetime
    # (at most a minute) keeps the expiry within 10 % of sliding exactly.
    return timedelta(seconds=min(60, max_age_s / 10))


@dataclass(frozen=True)
class TokenUse:
    user: User
    token: ApiToken
    slid: bool  # a session's expiry moved forward: its cookie should be re-sent


def use_token(session: Session, token: str) -> TokenUse | None:
    """The user behind ``token``, or None when it is unknown, revoked or expired. Using a
    session token pushes its expiry back (sliding), at most once per refresh interval."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
    now = utcnow()
    if row is None or row.expires_at <= now:
        return None
    max_age_s = get_settings().session_max_age_s
    slid = False
    if row.last_used_at is None or now - row.last_used_at >= _refresh_interval(max_age_s):
        row.last_used_at = now
        if row.kind == TokenKind.SESSION:
            row.expires_at = now + timedelta(seconds=max_age_s)
            slid = True
        session.flush()
    return TokenUse(row.user, row, slid)


def list_tokens(session: Session, user: User) -> list[ApiToken]:
    """The user's live tokens, newest first."""
    return list(
        session.scalars(
            select(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.expires_at > utcnow())
            .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        )
    )


def revoke_token_id(session: Session, user: User, token_id: int) -> None:
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id:
        raise TokenNotFound()
    session.delete(row)
    session.flush()


def revoke_token(session: Session, token: str) -> None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
    if row is not None:
        session.delete(row)
        session.flush()
