"""Types shared by every domain's schemas: bounded row ids and the error bodies."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any

from annotated_types import Ge, Le
from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# Primary keys are INTEGER columns: 32 bits on PostgreSQL, 64 on SQLite. A larger id can name
# no row, and the drivers raise on it (a 500), so it is refused as invalid input instead.
MAX_ROW_ID = 2**31 - 1


def integral_float(value: object) -> object:
    # JSON Schema counts 5.0 as an integer; strict bodies still refuse "5", true and 5.5.
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[int, BeforeValidator(integral_float)]
# annotated_types bounds: a Field() beside a BeforeValidator would not reach the JSON Schema.
RowId = Annotated[int, Ge(1), Le(MAX_ROW_ID), BeforeValidator(integral_float)]
PathId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Free text with at least one character that is not a space, and no control characters: the
# schema's word for what clean_name accepts.
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"


def name_field(max_length: int, **kwargs: Any) -> Any:
    """A name in a request body: 1 to ``max_length`` characters matching NAME_PATTERN."""
    return Field(
        min_length=1, max_length=max_length, json_schema_extra={"pattern": NAME_PATTERN}, **kwargs
    )


def clean_name(value: str, what: str) -> str:
    """Names are free text shown back escaped; only control characters and blanks are refused
    (surrounding spaces are dropped)."""
    if _CONTROL.search(value):
        raise ValueError(f"{what} cannot contain control characters")
    value = value.strip(" ")
    if not value:
        raise ValueError(f"{what} cannot be empty")
    return value


class Body(BaseModel):
    """A JSON request body: types are taken as declared (``"5"`` is not the integer 5), so
    that the server accepts exactly what the schema describes."""

    model_config = ConfigDict(strict=True)


class ErrorOut(BaseModel):
    """Every error answer: one sentence a person can act on."""

    detail: str


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: body, query or path, then the field")
    msg: str
    type: str


class ValidationErrorOut(ErrorOut):
    """422: the request does not fit the schema; the values sent are never echoed."""

    errors: list[FieldError] = Field(
        default_factory=list, description="empty when the value fits the schema but not a rule"
    )


_WHY = {
    400: "The request cannot be understood.",
    401: "Not signed in: no token, or it expired or was revoked.",
    403: "Not allowed: a cookie without its CSRF header, or not permitted to you.",
    404: "No such object, or it belongs to someone else.",
    409: "It clashes with the current state (a name in use, a run not finished, ...).",
    413: "The body is larger than this server accepts.",
    422: "The request does not fit the schema, or a value is unusable.",
    429: "Too many attempts: wait as long as Retry-After says.",
    503: "A part of the service it needs (the task queue) is unreachable; the reason is given.",
    507: "Your storage quota is used up, or the server is out of disk space.",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}


def errors(*statuses: int, streaming: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses an operation can answer. Errors are JSON
    even where the operation streams (``streaming``: FastAPI would file them under the
    route's own media type, ``text/event-stream``, which they are not)."""

    def body(status: int) -> dict[str, Any]:
        model = ValidationErrorOut if status == 422 else ErrorOut
        if streaming:  # the schemas are in components: every other operation uses them
            ref = {"$ref": f"#/components/schemas/{model.__name__}"}
            return {"content": {"application/json": {"schema": ref}}}
        return {"model": model}

    return {
        status: {
            **body(status),
            "description": _WHY[status],
            **({"headers": _RETRY_AFTER} if status == 429 else {}),
        }
        for status in statuses
    }


# The statuses most operations share: who may call, which object, what body.
AUTHED = (401,)
OWNED = (401, 404, 422)  # an id in the path
WRITE = (400, 401, 403, 413, 422)  # a body (400: not JSON), by bearer token or cookie + CSRF


def files_of(media_types: Iterable[str], description: str) -> dict[str, Any]:
    """An OpenAPI response whose body is a file (or stream) of these media types."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {"description": description, "content": {media: binary for media in media_types}}
