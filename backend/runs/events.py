"""Server-Sent Events for a run: one ``run`` event per change, then ``end``.

FastAPI frames the events (``EventSourceResponse``) and sends keep-alive comments while
nothing changes; this module only decides what to send. Reading never changes the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi.sse import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from backend.db import session_scope
from backend.runs import service
from backend.runs.models import Run
from backend.runs.schemas import RunOut

POLL_S = 0.5
RETRY_MS = 2000


def _snapshot(run_id: int) -> RunOut | None:
    with session_scope() as session:
        run = session.get(Run, run_id)
        return None if run is None else service.run_out(run)


def _change_key(run: RunOut) -> tuple[object, ...]:
    """What the page redraws for: a poll that changes none of these sends nothing."""
    history = None if run.history is None else [h.model_dump() for h in run.history]
    return (
        run.status,
        run.stage,
        run.stage_detail,
        run.progress,
        run.images_done,
        run.error,
        len(run.artifacts),
        history,
    )


async def run_events(run_id: int, poll_s: float = POLL_S) -> AsyncIterator[ServerSentEvent]:
    yield ServerSentEvent(retry=RETRY_MS)
    last: tuple[object, ...] | None = None
    while True:
        run = await run_in_threadpool(_snapshot, run_id)
        if run is None:
            yield ServerSentEvent(event="end", data={"id": run_id, "status": "deleted"})
            return
        key = _change_key(run)
        if key != last:
            last = key
            yield ServerSentEvent(event="run", data=run)
        if run.status.is_terminal:
            yield ServerSentEvent(event="end", data=run)
            return
        await asyncio.sleep(poll_s)
