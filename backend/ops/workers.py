"""Worker heartbeats in Redis: each worker's main process announces itself every interval.

The main process of a prefork worker never trains (its pool processes do), so its
announcements keep coming while every pool process is busy: busy and dead are told apart
without a ping task queued behind training. An announcement expires after three intervals,
and a worker counts as alive while its latest one is younger than two.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import asdict, dataclass
from typing import cast

import redis

KEY_PREFIX = "autodl:worker:"


@dataclass(frozen=True)
class WorkerSeen:
    name: str
    host: str
    pid: int
    queues: list[str]
    interval_s: float
    started_at: float
    seen_at: float

    def alive(self, now: float) -> bool:
        return now - self.seen_at <= 2 * self.interval_s

    def out(self, now: float) -> dict[str, object]:
        return {**asdict(self), "seen_s_ago": round(now - self.seen_at, 1)}


def announce(
    client: redis.Redis,
    name: str,
    *,
    queues: list[str],
    interval_s: float,
    started_at: float,
) -> None:
    seen = WorkerSeen(
        name=name,
        host=socket.gethostname(),
        pid=os.getpid(),
        queues=queues,
        interval_s=interval_s,
        started_at=started_at,
        seen_at=time.time(),
    )
    client.set(KEY_PREFIX + name, json.dumps(asdict(seen)), ex=max(1, math.ceil(3 * interval_s)))


def withdraw(client: redis.Redis, name: str) -> None:
    client.delete(KEY_PREFIX + name)


def workers_seen(client: redis.Redis) -> list[WorkerSeen]:
    """Every worker whose announcement has not expired, alive or late."""
    keys = sorted(client.scan_iter(match=KEY_PREFIX + "*", count=500))
    values = cast(list[bytes | None], client.mget(keys)) if keys else []
    seen = []
    for raw in values:
        if raw is None:
            continue
        try:
            seen.append(WorkerSeen(**json.loads(raw)))
        except (TypeError, ValueError):
            continue  # another version's format: not ours to judge
    return seen


def live_workers(client: redis.Redis, now: float | None = None) -> list[WorkerSeen]:
    now = time.time() if now is None else now
    return [worker for worker in workers_seen(client) if worker.alive(now)]
