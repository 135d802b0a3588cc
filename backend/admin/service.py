"""What an admin does with accounts: list, invite, disable, enable, reset a password."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.auth.models import AccountLink, LinkKind, User
from backend.auth.service import EmailTaken, issue_link, revoke_all_tokens
from backend.db import utcnow
from backend.errors import Conflict, NotFound


class AccountNotFound(NotFound):
    detail = "No account with this id."


class InviteNotFound(NotFound):
    detail = "No pending invitation with this id."


class CannotDisableYourself(Conflict):
    detail = "You cannot disable your own account: another admin has to."


def list_accounts(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def get_account(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise AccountNotFound()
    return user


def find_account(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        raise AccountNotFound(f"No account with the email {email}.")
    return user


def invite(session: Session, admin: User | None, email: str) -> tuple[AccountLink, str]:
    """A one-time sign-up link for ``email`` (``admin`` is None from the command line)."""
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise EmailTaken("An account with this email already exists: no invitation is needed.")
    return issue_link(session, LinkKind.INVITE, email, user=None, created_by=admin)


def pending_invites(session: Session) -> list[AccountLink]:
    return list(
        session.scalars(
            select(AccountLink)
            .where(
                AccountLink.kind == LinkKind.INVITE,
                AccountLink.used_at.is_(None),
                AccountLink.expires_at > utcnow(),
            )
            .order_by(AccountLink.created_at.desc(), AccountLink.id.desc())
        )
    )


def withdraw_invite(session: Session, link_id: int) -> None:
    link = session.get(AccountLink, link_id)
    if link is None or link.kind != LinkKind.INVITE or link.used_at is not None:
        raise InviteNotFound()
    session.delete(link)
    session.flush()


def disable(session: Session, admin: User | None, user: User) -> User:
    """The account can no longer log in, and every token it holds stops working now."""
    if admin is not None and admin.id == user.id:
        raise CannotDisableYourself()
    if user.disabled_at is None:
        user.disabled_at = utcnow()
    revoke_all_tokens(session, user)
    session.flush()
    return user


def enable(session: Session, user: User) -> User:
    user.disabled_at = None
    session.flush()
    return user


def reset(session: Session, admin: User | None, user: User) -> tuple[AccountLink, str]:
    """Sign the user out everywhere and make a one-time link to choose a new password."""
    revoke_all_tokens(session, user)
    return issue_link(session, LinkKind.RESET, user.email, user=user, created_by=admin)


def link_path(link: AccountLink, secret: str) -> str:
    page = "/signup?invite=" if link.kind == LinkKind.INVITE else "/reset?token="
    return page + secret
