"""Users and their tokens."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.auth.models import ApiToken, User
from backend.auth.security import hash_password, new_token, token_digest, verify_password
from backend.errors import AppError, Conflict


class InvalidCredentials(AppError):
    status = 401
    detail = "That email and password do not match an account."


class EmailTaken(Conflict):
    detail = "An account with this email already exists. Log in instead."


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


def issue_token(session: Session, user: User, name: str = "") -> str:
    """Create a bearer token for ``user``; the plain value is returned once and never stored."""
    token = new_token()
    session.add(ApiToken(user_id=user.id, token_hash=token_digest(token), name=name))
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
    return row.user if row is not None else None


def revoke_token(session: Session, token: str) -> None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
    if row is not None:
        session.delete(row)
        session.flush()
