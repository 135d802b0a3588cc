"""Health, readiness and metrics: what a load balancer, an orchestrator and Prometheus call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from backend import __version__
from backend.deps import SettingsDep
from backend.ops import health, metrics
from backend.schemas import errors, files_of

router = APIRouter(tags=["health"])


class LiveOut(BaseModel):
    status: str
    version: str


class ReadyOut(BaseModel):
    status: str = "ok"
    version: str
    failing: list[str]
    checks: dict[str, dict[str, Any]]


@router.get("/api/health", responses={**errors(422), 503: {"model": ReadyOut}})
def overall(settings: SettingsDep, worker: bool = True) -> JSONResponse:
    """``{status: "ok"}`` with the database's and (``worker=true``) the workers' state; a
    database that does not answer is a 503 naming it."""
    database = health.check_database()
    body: dict[str, Any] = {
        "status": "ok" if database["ok"] else "unavailable",
        "version": __version__,
        "database": "ok" if database["ok"] else database["error"],
    }
    if worker:
        body["worker"] = health.check_workers(settings)
    if not database["ok"]:
        body["failing"] = ["database"]
        body["detail"] = f"The database does not answer: {database['error']}"
    return JSONResponse(body, status_code=200 if database["ok"] else 503)


@router.get("/api/health/live", response_model=LiveOut)
def live() -> LiveOut:
    """The process is up and serving (nothing else is checked)."""
    return LiveOut(status="ok", version=__version__)


@router.get(
    "/api/health/ready",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "The parts named in 'failing' are down."}},
)
def ready(settings: SettingsDep) -> JSONResponse:
    """Database, broker and at least one worker seen within its heartbeat interval."""
    ok, body = health.readiness(settings)
    if not ok:
        body["detail"] = "Not ready: " + "; ".join(
            f"{name}: {body['checks'][name].get('error', 'down')}" for name in body["failing"]
        )
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: files_of([CONTENT_TYPE_LATEST], "Prometheus text exposition format")},
)
def prometheus_metrics() -> Response:
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
