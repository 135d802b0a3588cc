"""Liveness and readiness: which part of the service is failing, said in JSON."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import text

from backend import __version__
from backend.config import Settings
from backend.db import get_engine
from backend.ops.workers import live_workers, workers_seen
from backend.queue import broker_redis
from backend.storage import S3Storage, get_storage


def _reason(exc: Exception) -> str:
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def check_database() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to answer is "database down", said with its reason
        return {"ok": False, "error": _reason(exc)}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def check_broker(settings: Settings) -> dict[str, Any]:
    if not settings.redis_url:
        return {"ok": False, "error": "no broker configured (set AUTODL_REDIS_URL)"}
    started = time.perf_counter()
    try:
        broker_redis().ping()
    except Exception as exc:
        return {"ok": False, "error": _reason(exc)}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def check_workers(settings: Settings) -> dict[str, Any]:
    """At least one worker announced itself within two of its heartbeat intervals."""
    if not settings.redis_url:
        return {"ok": False, "alive": False, "error": "no broker configured", "workers": []}
    now = time.time()
    try:
        seen = workers_seen(broker_redis())
    except Exception as exc:
        return {"ok": False, "alive": False, "error": _reason(exc), "workers": []}
    alive = [w for w in seen if w.alive(now)]
    body: dict[str, Any] = {
        "ok": bool(alive),
        "alive": bool(alive),
        "count": len(alive),
        "workers": [w.out(now) for w in seen],
    }
    if not alive:
        body["error"] = (
            "no worker has sent a heartbeat within its interval: start one with `autodl worker`"
        )
    return body


def check_storage(settings: Settings) -> dict[str, Any]:
    """The object store answers (the data dir, the default, needs no check)."""
    if not settings.storage_url:
        return {"ok": True, "kind": "local"}
    started = time.perf_counter()
    try:
        storage = get_storage()
        if isinstance(storage, S3Storage):
            storage.check()
    except Exception as exc:
        return {"ok": False, "kind": "s3", "error": _reason(exc)}
    return {"ok": True, "kind": "s3", "ms": round((time.perf_counter() - started) * 1000, 1)}


def readiness(settings: Settings) -> tuple[bool, dict[str, Any]]:
    checks = {
        "database": check_database(),
        "broker": check_broker(settings),
        "storage": check_storage(settings),
        "workers": check_workers(settings),
    }
    failing = [name for name, check in checks.items() if not check["ok"]]
    body = {
        "status": "ok" if not failing else "unavailable",
        "version": __version__,
        "failing": failing,
        "checks": checks,
    }
    return not failing, body


def worker_count() -> int:
    return len(live_workers(broker_redis()))
