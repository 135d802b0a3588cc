"""Domain errors carry their HTTP status; one handler renders them as ``{"detail": ...}``."""

from __future__ import annotations

import re
from functools import lru_cache

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


class AppError(Exception):
    status: int = 400
    detail: str = "Bad request."
    headers: dict[str, str] | None = None

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.detail)
        if detail:
            self.detail = detail


class NotFound(AppError):
    status = 404
    detail = "Not found."


class Unauthorized(AppError):
    status = 401
    detail = "Sign in, or send an API token as 'Authorization: Bearer <token>'."


class Forbidden(AppError):
    status = 403
    detail = "Forbidden."


class Conflict(AppError):
    status = 409
    detail = "Conflict."


class InvalidInput(AppError):
    status = 422
    detail = "Invalid input."


class InsufficientStorage(AppError):
    status = 507
    detail = "There is no room left for this upload."


class OutOfDiskSpace(InsufficientStorage):
    detail = (
        "The file could not be stored: the server is out of disk space (or its storage "
        "refused the write). Nothing was added; ask the administrator to free space."
    )


class ServiceUnavailable(AppError):
    status = 503
    detail = "A part of the service is unreachable; try again in a minute."


def is_disk_full(exc: BaseException) -> bool:
    """A write failed for want of room (or quota, or a broken disk), not because of the data."""
    import errno

    return isinstance(exc, OSError) and exc.errno in (
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EIO,
        errno.EROFS,
    )


class PayloadTooLarge(AppError):
    status = 413
    detail = "The upload is larger than this server accepts."


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or "Invalid request."


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        detail = exc.detail
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path; a path served by
            # several routes (GET and DELETE /api/images/{iid}) allows all of their methods.
            allowed = allowed_methods(request) or sorted(
                m.strip() for m in headers.get("Allow", "").split(",") if m.strip()
            )
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed here; use {', '.join(allowed)}."
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"detail": _validation_message(exc), "errors": _public_errors(exc)},
            status_code=422,
        )


def _public_errors(exc: RequestValidationError) -> list[dict[str, object]]:
    """Where and why, never what was sent: an error's ``input`` may be a password (or a whole
    body holding one), and an answer must not echo secrets into logs, proxies or screens."""
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e["type"]}
        for e in exc.errors()
    ]


def allowed_methods(request: Request) -> list[str]:
    """Every method the app serves at this request's path: those the OpenAPI schema lists for
    it (HEAD with GET), and those Starlette named for the route it matched."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        if _template_regex(template).fullmatch(request.url.path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


@lru_cache(maxsize=256)
def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)))
