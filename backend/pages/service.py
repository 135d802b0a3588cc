"""What the HTML pages need from the database: the signed-in user and the objects they own."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.auth.models import User
from backend.auth.service import user_for_token
from backend.errors import NotFound
from backend.projects.models import Project
from backend.projects.service import get_project
from backend.runs.models import Run


class RunNotFound(NotFound):
    detail = "Run not found."


def page_user(session: Session, session_token: str | None) -> User | None:
    """The user behind the session cookie, or None when it is missing, expired or revoked."""
    if not session_token:
        return None
    return user_for_token(session, session_token)


def owned_project(session: Session, user: User, project_id: int) -> Project:
    return get_project(session, user, project_id)


def owned_run(session: Session, user: User, run_id: int) -> Run:
    """A run of one of the user's projects; anyone else's answers the same 404 as a missing one."""
    run = session.get(Run, run_id)
    if run is None:
        raise RunNotFound()
    project = session.get(Project, run.project_id)
    if project is None or project.owner_id != user.id:
        raise RunNotFound()
    return run
