from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, field_validator

from backend.auth.models import LinkKind
from backend.auth.schemas import Credentials, email_field
from backend.schemas import Body


class AccountOut(BaseModel):
    """A user as an admin sees it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    is_admin: bool
    disabled_at: datetime | None
    created_at: datetime


class InviteIn(Body):
    email: str = email_field()

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return Credentials.normalise_email(value)


class LinkOut(BaseModel):
    """A one-time link to hand to a person; ``path`` holds its secret and is shown once."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: LinkKind
    email: str
    created_at: datetime
    expires_at: datetime
    path: str | None = None
