"""HTML pages: server-rendered shells (names escaped by Jinja) that ES modules fill from /api."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
from collections.abc import Callable, Coroutine
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import jinja2
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from backend import __version__
from backend.auth.models import User
from backend.auth.security import SESSION_COOKIE
from backend.auth.service import signup_mode
from backend.deps import SessionDep, token_user
from backend.errors import NotFound
from backend.pages import service
from backend.schemas import PathId

FRONTEND_DIR = Path(__file__).resolve().parents[2] / "frontend"
STATIC_DIR = FRONTEND_DIR / "static"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(FRONTEND_DIR / "templates"),
    autoescape=True,  # every user string (project, label, file names) is escaped
    undefined=jinja2.StrictUndefined,
)
templates = Jinja2Templates(env=_env)


@lru_cache(maxsize=256)
def _static_digest(path: str) -> str:
    try:
        return hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:10]
    except OSError:
        return __version__


def static_url(path: str) -> str:
    """A cache-busting URL for a file under frontend/static."""
    return f"/static/{path}?v={_static_digest(path)}"


_env.globals["static_url"] = static_url


class LoginRequired(Exception):
    """Raised by the page dependency; the page route answers with a redirect to /login."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class PageRoute(APIRoute):
    """Turns 'not signed in' into a redirect and 'not yours / not there' into an HTML 404."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                return RedirectResponse(f"/login?next={quote(exc.next_url, safe='')}", 303)
            except NotFound as exc:
                return render(request, "not_found.html", {"message": exc.detail}, status=404)
            except RequestValidationError:  # /projects/abc or an id no row can have
                return render(request, "not_found.html", {"message": "Page not found."}, 404)

        return page_handler


router = APIRouter(route_class=PageRoute, include_in_schema=False)


# Defence in depth behind escaping: only this origin's scripts run, and nothing can frame a page.
# Styles allow 'unsafe-inline' because Plotly sets style attributes on the charts it draws.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    context = {"user": getattr(request.state, "user", None), **(context or {})}
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def optional_user(request: Request, session: SessionDep) -> User | None:
    """The user behind the session cookie, or None when it is missing, expired or revoked."""
    token = request.cookies.get(SESSION_COOKIE)
    user = token_user(request, session, token, from_cookie=True) if token else None
    request.state.user = user
    return user


def page_user(user: Annotated[User | None, Depends(optional_user)], request: Request) -> User:
    """The signed-in user of a page; without a valid session cookie the page redirects."""
    if user is None:
        next_url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(next_url)
    return user


OptionalUser = Annotated[User | None, Depends(optional_user)]
PageUser = Annotated[User, Depends(page_user)]


# Browsers drop tabs and newlines inside URLs and read "\\" as "/": "/\t/evil.example" is
# "//evil.example", another site. A control character, a space or a backslash is never needed
# in a path of this site, so a ``next`` holding one is ignored.
_UNSAFE_IN_NEXT = re.compile(r"[\x00-\x20\x7f\\]")


def safe_next(next_url: str | None) -> str:
    """``next_url`` if it is a path of this site; otherwise the projects page."""
    if (
        next_url
        and next_url.startswith("/")
        and not next_url.startswith("//")
        and not _UNSAFE_IN_NEXT.search(next_url)
        and not urlsplit(next_url).netloc
    ):
        return next_url
    return "/projects"


@router.get("/", response_class=HTMLResponse)
def home(request: Request, user: OptionalUser, session: SessionDep) -> Response:
    """What autodl does, in three steps, and the way in; a new server asks for its admin."""
    if user is not None:
        return RedirectResponse("/projects", 303)
    return render(request, "landing.html", {"signup_mode": signup_mode(session)})


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, user: OptionalUser, next: str | None = None) -> Response:
    if user is not None:
        return RedirectResponse(safe_next(next), 303)
    return render(request, "auth.html", {"mode": "login", "next_url": safe_next(next)})


@router.get("/signup", response_class=HTMLResponse)
def signup_page(
    request: Request,
    user: OptionalUser,
    session: SessionDep,
    next: str | None = None,
    invite: str | None = None,
) -> Response:
    if user is not None:
        return RedirectResponse(safe_next(next), 303)
    mode = signup_mode(session)
    context = {
        "mode": "signup",
        "next_url": safe_next(next),
        "signup_mode": mode,
        "invite": invite or "",
        "closed": mode == "closed" or (mode == "invite" and not invite),
    }
    return render(request, "auth.html", context)


@router.get("/reset", response_class=HTMLResponse)
def reset_page(request: Request, token: str = "") -> Response:
    """Choose a new password with the one-time link an admin made."""
    return render(request, "auth.html", {"mode": "reset", "next_url": "/projects", "token": token})


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, user: PageUser) -> HTMLResponse:
    if not user.is_admin:
        raise NotFound("Page not found.")
    return render(request, "admin.html")


@router.get("/projects", response_class=HTMLResponse)
def projects_page(request: Request, user: PageUser) -> HTMLResponse:
    return render(request, "projects.html")


@router.get("/projects/{pid}", response_class=HTMLResponse)
def project_page(
    request: Request, pid: PathId, user: PageUser, session: SessionDep
) -> HTMLResponse:
    project = service.owned_project(session, user, pid)
    return render(request, "project.html", {"project": project})


@router.get("/projects/{pid}/compare", response_class=HTMLResponse)
def compare_page(
    request: Request, pid: PathId, user: PageUser, session: SessionDep
) -> HTMLResponse:
    """Two to four runs side by side; the page reads ``?runs=1,2,3`` and fetches them from /api."""
    project = service.owned_project(session, user, pid)
    return render(request, "compare.html", {"project": project})


@router.get("/runs/{rid}", response_class=HTMLResponse)
def run_page(request: Request, rid: PathId, user: PageUser, session: SessionDep) -> HTMLResponse:
    run = service.owned_run(session, user, rid)
    project = service.owned_project(session, user, run.project_id)
    return render(request, "run.html", {"run": run, "project": project})


def _plotly_js() -> Path:
    spec = importlib.util.find_spec("plotly")  # locate without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise NotFound("plotly is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


@router.api_route("/static/vendor/plotly.min.js", methods=["GET", "HEAD"])
def plotly_js() -> FileResponse:
    """Plotly from the installed Python package: the dashboard works offline, with no CDN."""
    path = _plotly_js()
    if not path.is_file():
        raise NotFound("plotly.min.js is missing from the installed plotly package")
    return FileResponse(
        path,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


@lru_cache(maxsize=1)
def plotly_url() -> str:
    """Versioned by the installed plotly release, so the long cache lifetime is safe."""
    try:
        version = importlib.metadata.version("plotly")
    except importlib.metadata.PackageNotFoundError:
        version = "missing"
    return f"/static/vendor/plotly.min.js?v={version}"


_env.globals["plotly_url"] = plotly_url
