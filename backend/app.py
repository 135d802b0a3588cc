"""The FastAPI application: routers, error handlers, static files, schema upgrade at start."""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from backend import __version__, migrations
from backend.admin.router import router as admin_router
from backend.apidocs import install_api_docs
from backend.auth.cookies import SessionCookieRenewal
from backend.auth.router import router as auth_router
from backend.config import Settings, get_settings
from backend.errors import install_error_handlers
from backend.explanations.router import router as explanations_router
from backend.headers import SecurityHeaders
from backend.health.router import router as health_router
from backend.images.orphans import remove_orphans
from backend.images.router import router as images_router
from backend.limits import install_body_limit
from backend.ops.metrics import RequestMetrics
from backend.ops.router import router as ops_router
from backend.pages.router import router as pages_router
from backend.projects.router import router as projects_router
from backend.ratelimit import RateLimiter
from backend.runs.recovery import RecoverySweep
from backend.runs.router import backbones_router
from backend.runs.router import router as runs_router

FRONTEND_DIR = Path(__file__).resolve().parents[1] / "frontend"


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    settings = migrations.prepare_to_serve(get_settings())
    # Uploads spool to disk past 1 MB (Starlette's SpooledTemporaryFile, which takes no folder
    # argument): into the data dir, whose disk is sized for images, not the system's /tmp.
    system_tmp, tempfile.tempdir = tempfile.tempdir, str(settings.tmp_dir.resolve())
    threading.Thread(
        target=_remove_orphans, args=(settings,), name="autodl-orphans", daemon=True
    ).start()
    # The API sweeps too: runs are recovered even while no worker is alive (a silent run is
    # requeued, then shown as queued, not running for ever).
    sweep = (
        RecoverySweep(settings.recovery_sweep_s).start()
        if settings.redis_url and settings.recovery_sweep_s > 0
        else None
    )
    try:
        yield
    finally:
        if sweep is not None:
            sweep.stop()
        tempfile.tempdir = system_tmp


def _remove_orphans(settings: Settings) -> None:
    """What an API killed mid-ingest left behind (backend/images/orphans.py)."""
    try:
        remove_orphans(settings, settings.orphan_grace_s)
    except Exception:
        logging.getLogger(__name__).exception("could not look for leftovers of uploads")


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="autodl", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    install_body_limit(app, settings.max_request_bytes)
    app.add_middleware(SessionCookieRenewal)
    app.add_middleware(SecurityHeaders)  # the 413 above gets the headers too
    app.add_middleware(RequestMetrics)  # outermost: times every answer, 413s included
    app.state.limiter = RateLimiter(settings)
    install_error_handlers(app)
    install_api_docs(app)

    for router in (
        ops_router,
        auth_router,
        admin_router,
        projects_router,
        images_router,
        health_router,
        explanations_router,
        runs_router,
        backbones_router,
        pages_router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=FRONTEND_DIR / "static"), name="static")
    return app
