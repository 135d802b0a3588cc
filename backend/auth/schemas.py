from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.auth.models import TokenKind
from backend.schemas import Body, JsonInt, clean_name, name_field

MAX_API_TOKEN_DAYS = 366


# Something@something.something without spaces or control characters; the schema says the
# same, so what the schema admits the server accepts.
_NO_SPACE = r"[^@\x00-\x20\x7f]"
EMAIL_PATTERN = f"^{_NO_SPACE}+@{_NO_SPACE}+\\.{_NO_SPACE}+$"
_EMAIL = re.compile(EMAIL_PATTERN)


def email_field() -> Any:
    return Field(min_length=3, max_length=320, json_schema_extra={"pattern": EMAIL_PATTERN})


class Credentials(Body):
    email: str = email_field()
    password: str = Field(min_length=1, max_length=1024)

    @field_validator("email")
    @classmethod
    def normalise_email(cls, value: str) -> str:
        """Emails are compared lower-cased."""
        if not _EMAIL.fullmatch(value):
            raise ValueError("enter a valid email address, like ada@example.com")
        return value.lower()


class SignupIn(Credentials):
    password: str = Field(min_length=8, max_length=1024)
    invite: str | None = Field(
        default=None, max_length=200, description="the secret of an admin's invite link"
    )


class ResetIn(Body):
    token: str = Field(min_length=1, max_length=200, description="the reset link's secret")
    password: str = Field(min_length=8, max_length=1024)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    is_admin: bool
    created_at: datetime


class SignupOut(BaseModel):
    token: str
    user: UserOut


class LoginOut(BaseModel):
    token: str
    user: UserOut


class TokenIn(Body):
    name: str = name_field(100, description="what the token is for")
    expires_in_days: JsonInt = Field(
        ge=1, le=MAX_API_TOKEN_DAYS, description="lifetime; the token stops working after it"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return clean_name(value, "token name")


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: TokenKind
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    current: bool = False


class NewTokenOut(TokenOut):
    token: str
