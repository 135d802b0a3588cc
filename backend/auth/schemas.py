from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.auth.models import TokenKind

MAX_API_TOKEN_DAYS = 366


class Credentials(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)

    @field_validator("email")
    @classmethod
    def normalise_email(cls, value: str) -> str:
        value = value.strip().lower()
        local, _, domain = value.partition("@")
        if not local or "." not in domain or " " in value:
            raise ValueError("enter a valid email address, like ada@example.com")
        return value


class SignupIn(Credentials):
    password: str = Field(min_length=8, max_length=1024)
    invite: str | None = Field(
        default=None, max_length=200, description="the secret of an admin's invite link"
    )


class ResetIn(BaseModel):
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


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="what the token is for")
    expires_in_days: int = Field(
        ge=1, le=MAX_API_TOKEN_DAYS, description="lifetime; the token stops working after it"
    )


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
