"""Users, sign-up (open, by invitation or closed), log-in, tokens and one-time links."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from backend.auth.models import AccountLink, ApiToken, LinkKind, TokenKind, User
from backend.auth.security import (
    hash_password,
    new_token,
    password_weakness,
    token_digest,
    verify_password,
    verify_password_of_nobody,
)
from backend.config import get_settings
from backend.db import session_scope, utcnow
from backend.errors import AppError, Conflict, Forbidden, InvalidInput, NotFound


class InvalidCredentials(AppError):
    status = 401
    detail = "That email and password do not match an account."


class EmailTaken(Conflict):
    detail = "An account with this email already exists. Log in instead."


class WeakPassword(InvalidInput):
    pass


class SignupClosed(Forbidden):
    detail = (
        "Sign-up is closed on this server: an admin creates accounts "
        "(autodl user create --email ...)."
    )


class InviteRequired(Forbidden):
    detail = (
        "Sign-up on this server is by invitation: open the invite link an admin gave you, "
        "or ask an admin for one."
    )


class InviteNotValid(Forbidden):
    detail = (
        "This invitation is not valid: it was already used, has expired, or was copied "
        "incompletely. Ask an admin for a new one."
    )


class InviteForAnotherEmail(Forbidden):
    detail = "This invitation is for another email address: sign up with the invited one."


class ResetLinkNotValid(Forbidden):
    detail = (
        "This password-reset link is not valid: it was already used, has expired, or was "
        "copied incompletely. Ask an admin for a new one."
    )


class AccountDisabled(Forbidden):
    detail = "This account is disabled. Ask an admin of this server to enable it again."


class TokenNotFound(NotFound):
    detail = "Token not found."


def _checked_hash(password: str, email: str) -> str:
    weakness = password_weakness(password, email)
    if weakness:
        raise WeakPassword(weakness)
    return hash_password(password)


def _email_taken(session: Session, email: str) -> bool:
    return session.scalar(select(User.id).where(User.email == email)) is not None


def create_user(session: Session, email: str, password: str, *, is_admin: bool = False) -> User:
    """An account made by an admin (CLI) or by a permitted sign-up."""
    password_hash = _checked_hash(password, email)
    if _email_taken(session, email):
        raise EmailTaken()
    user = User(email=email, password_hash=password_hash, is_admin=is_admin)
    session.add(user)
    session.flush()
    return user


def signup_mode(session: Session) -> str:
    """``first`` on a fresh server (whoever signs up becomes admin), else the setting."""
    mode = get_settings().signup
    if mode != "closed" and not session.scalar(select(func.count()).select_from(User)):
        return "first"
    return mode


def sign_up(session: Session, email: str, password: str, invite: str | None) -> User:
    """Sign-up as the server's mode allows. Who may sign up is decided before the email is
    looked at, so an outsider learns nothing about which emails have accounts."""
    mode = signup_mode(session)
    if mode == "closed":
        raise SignupClosed()
    link = None
    if mode == "invite":
        if not invite:
            raise InviteRequired()
        link = _live_link(session, LinkKind.INVITE, invite)
        if link is None:
            raise InviteNotValid()
        if link.email != email:
            raise InviteForAnotherEmail()
    user = create_user(session, email, password, is_admin=mode == "first")
    if link is not None:
        link.used_at = utcnow()
        session.flush()
    return user


def authenticate(session: Session, email: str, password: str) -> User:
    """The account for these credentials. An unknown email costs the same argon2 work as a
    wrong password; a disabled account is only named once its password was right."""
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        verify_password_of_nobody(password)
        raise InvalidCredentials()
    if not verify_password(user.password_hash, password):
        raise InvalidCredentials()
    if user.disabled_at is not None:
        raise AccountDisabled()
    return user


def log_in(email: str, password: str) -> tuple[User, str]:
    """The account for these credentials and a new session token for it.

    Checked and written in a short transaction of its own, committed before the route
    returns. In the request's transaction the new token held SQLite's write lock until the
    answer was serialized, which needs one of the API's worker threads; with 40 log-ins at
    once every thread was taken by log-ins waiting for that lock, and they failed after the
    30-second busy timeout (bench/load.py: 32 of 50 log-ins answered 500)."""
    with session_scope() as own:
        user = authenticate(own, email, password)
        return user, issue_session(own, user, name="login")


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
    user_id: int
    token_id: int
    slid: bool  # a session's expiry moved forward: its cookie should be re-sent


def use_token(token: str) -> TokenUse | None:
    """Whose ``token`` this is, or None when it is unknown, revoked, expired or its user is
    disabled. Using a session token pushes its expiry back (sliding), at most once per
    refresh interval.

    This runs in a short transaction of its own, committed before the request's work starts:
    sliding is a write, and in the request's transaction it held SQLite's write lock for the
    whole request (a listing, a prediction), so uploads, log-ins and the worker waited behind
    reads and failed with "database is locked" under load."""
    with session_scope() as own:
        row = own.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
        now = utcnow()
        if row is None or row.expires_at <= now or row.user.disabled_at is not None:
            return None
        max_age_s = get_settings().session_max_age_s
        slid = False
        if row.last_used_at is None or now - row.last_used_at >= _refresh_interval(max_age_s):
            row.last_used_at = now
            if row.kind == TokenKind.SESSION:
                row.expires_at = now + timedelta(seconds=max_age_s)
                slid = True
        return TokenUse(row.user_id, row.id, slid)


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


def revoke_all_tokens(session: Session, user: User) -> None:
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    session.expire(user, ["tokens"])


def issue_link(
    session: Session, kind: LinkKind, email: str, *, user: User | None, created_by: User | None
) -> tuple[AccountLink, str]:
    """A one-time invitation or reset link's row and secret (shown once, stored hashed)."""
    settings = get_settings()
    max_age = settings.invite_max_age_s if kind == LinkKind.INVITE else settings.reset_max_age_s
    secret = new_token()
    now = utcnow()
    link = AccountLink(
        kind=kind,
        token_hash=token_digest(secret),
        email=email,
        user_id=user.id if user else None,
        created_by_id=created_by.id if created_by else None,
        created_at=now,
        expires_at=now + timedelta(seconds=max_age),
    )
    session.add(link)
    session.flush()
    return link, secret


def _live_link(session: Session, kind: LinkKind, secret: str) -> AccountLink | None:
    link = session.scalar(select(AccountLink).where(AccountLink.token_hash == token_digest(secret)))
    if link is None or link.kind != kind or link.used_at is not None:
        return None
    return link if link.expires_at > utcnow() else None


def reset_password(session: Session, secret: str, password: str) -> User:
    """Redeem a reset link: a new password, every old session and token revoked."""
    link = _live_link(session, LinkKind.RESET, secret)
    user = session.get(User, link.user_id) if link and link.user_id else None
    if link is None or user is None:
        raise ResetLinkNotValid()
    user.password_hash = _checked_hash(password, user.email)
    link.used_at = utcnow()
    revoke_all_tokens(session, user)
    session.flush()
    return user
