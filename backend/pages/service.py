"""What the HTML pages need from the database: the objects the signed-in user owns."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.auth.models import User
from backend.errors import NotFound
from backend.projects.models import Project
from backend.projects.service import get_project
from backend.runs.models import Run


class RunNotFound(NotFound):
    detail = "Run not found."


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
