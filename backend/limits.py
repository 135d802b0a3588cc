"""413, with a message a person understands, for request bodies over the configured size.

Starlette's ``RequestBodyLimitMiddleware`` counts a body as it streams in and raises a 413
``HTTPException`` once the app reads past the limit; the handler below words it. A body
*declared* too large it answers itself, in plain text "Content Too Large" that cannot be
reworded, so ``DeclaredBodyLimit`` answers those first, in JSON, before any work. (FastAPI's
``max_body_size`` is the same middleware placed outside the app's own, where the security
headers would miss its answers.)
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send


def too_large(max_bytes: int) -> JSONResponse:
    detail = (
        f"The upload is too large: this server accepts at most {max_bytes / 1024**2:.0f} MB "
        "per request. Send the files in smaller batches."
    )
    return JSONResponse({"detail": detail}, status_code=413, headers={"Connection": "close"})


class DeclaredBodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                await too_large(self.max_bytes)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_body_limit(app: FastAPI, max_bytes: int) -> None:
    """413 above ``max_bytes``: Starlette counts, the handler and the guard word it."""

    async def streamed_too_large(_: Request, __: Exception) -> JSONResponse:
        return too_large(max_bytes)

    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=max_bytes)
    app.add_middleware(DeclaredBodyLimit, max_bytes=max_bytes)  # outside Starlette's
    app.add_exception_handler(413, streamed_too_large)
