"""Server-Sent Events for a run: one ``run`` event per change, then ``end``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool

from backend.config import get_settings
from backend.db import get_sessionmaker
from backend.runs import service
from backend.runs.models import Run

POLL_S = 0.5
KEEPALIVE_S = 15.0


def _snapshot(run_id: int) -> dict[str, Any] | None:
    with get_sessionmaker()() as session:
        run = session.get(Run, run_id)
        if run is None:
            return None
        service.fail_if_worker_lost(session, run, get_settings())
        session.commit()
        return service.event_payload(run)


def _frame(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def run_events(run_id: int, poll_s: float = POLL_S) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    last: str | None = None
    idle = 0.0
    while True:
        payload = await run_in_threadpool(_snapshot, run_id)
        if payload is None:
            yield _frame("end", {"id": run_id, "status": "deleted"})
            return
        key = json.dumps(
            [payload[k] for k in ("status", "stage", "progress", "images_done", "error")]
            + [len(payload["artifacts"]), payload["history"]]
        )
        if key != last:
            last = key
            idle = 0.0
            yield _frame("run", payload)
        if payload["status"] in ("succeeded", "failed", "cancelled"):
            yield _frame("end", payload)
            return
        await asyncio.sleep(poll_s)
        idle += poll_s
        if idle >= KEEPALIVE_S:
            idle = 0.0
            yield ": keep-alive\n\n"
