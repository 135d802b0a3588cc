"""The browser's session and CSRF cookies, and their renewal as the session slides."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.auth.security import CSRF_COOKIE, SESSION_COOKIE, csrf_token_for
from backend.config import Settings, get_settings

RENEW_STATE = "renew_session_cookie"


def set_session_cookies(response: Response, token: str, settings: Settings) -> None:
    common = {
        "max_age": settings.session_max_age_s,
        "secure": settings.cookie_secure,
        "samesite": "lax",
        "path": "/",
    }
    response.set_cookie(SESSION_COOKIE, token, httponly=True, **common)  # type: ignore[arg-type]
    response.set_cookie(  # readable by the page's scripts, which echo it in X-CSRF-Token
        CSRF_COOKIE,
        csrf_token_for(token, settings.secret_key),
        httponly=False,
        **common,  # type: ignore[arg-type]
    )


def clear_session_cookies(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


class SessionCookieRenewal:
    """When a request's session slid forward (``scope['state'][RENEW_STATE]`` holds its
    token), the answer re-sets the cookies so the browser keeps them as long as the server
    does; any kind of response (JSON, a page, a file) carries them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_renewed(message: Message) -> None:
            token = scope.get("state", {}).get(RENEW_STATE)
            if message["type"] == "http.response.start" and token:
                headers = list(message.get("headers", []))
                if not any(
                    k == b"set-cookie" and v.startswith(SESSION_COOKIE.encode()) for k, v in headers
                ):
                    cookies = Response()
                    set_session_cookies(cookies, token, get_settings())
                    headers += [(k, v) for k, v in cookies.raw_headers if k == b"set-cookie"]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_renewed)
