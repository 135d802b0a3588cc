"""/docs and /redoc from the Swagger UI and ReDoc files of the installed ``fastapi-offline``
package: no CDN (they work offline), pinned by the package's version, and a CSP that lets only
those files and the page's one inline start-up script run."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/static/apidocs"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def assets_dir() -> Path:
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fastapi-offline is not installed: pip install fastapi-offline")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _with_csp(page: HTMLResponse) -> tuple[str, dict[str, str]]:
    """The page's inline scripts are allowed by their hashes, nothing else inline runs."""
    body = bytes(page.body).decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(body)
    )
    # ReDoc styles itself with inline <style> and runs its search in a blob: worker.
    policy = (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src blob:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return body, {"Content-Security-Policy": policy}


def install_api_docs(app: FastAPI) -> None:
    """Serve /docs (Swagger UI) and /redoc with their assets; ``app`` is created with
    ``docs_url=None, redoc_url=None`` so FastAPI's CDN-loading pages are not there."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="apidocs")
    openapi_url = app.openapi_url or "/openapi.json"
    swagger_body, swagger_headers = _with_csp(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url="/static/img/logo.svg",
            oauth2_redirect_url=None,
        )
    )
    redoc_body, redoc_headers = _with_csp(
        get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url="/static/img/logo.svg",
            with_google_fonts=False,
        )
    )

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger_body, headers=swagger_headers)

    @app.get("/redoc", include_in_schema=False)
    def redoc_ui() -> HTMLResponse:
        return HTMLResponse(redoc_body, headers=redoc_headers)
