"""Start real ``autodl serve`` / ``autodl worker`` processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from backend.client import run_events

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    env: dict[str, str]
    log: Path

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)


def autodl_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODL_")}
    env.update(AUTODL_DATA_DIR=str(data_dir), AUTODL_SECRET_KEY="e2e-secret", **extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "backend.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so the whole process group (worker pool too) can be stopped
    )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_healthy(url: str, log: Path, worker: bool = True, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{url}/api/health", params={"worker": worker}, timeout=5).json()
            last = body
            if not worker or body.get("worker", {}).get("alive"):
                return body
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"server not healthy: {last}\n{log.read_text()[-3000:]}")


@contextmanager
def live_server(
    data_dir: Path, *, worker: bool = True, **env_extra: str
) -> Iterator[tuple[LiveServer, subprocess.Popen[bytes]]]:
    port = free_port()
    env = autodl_env(data_dir, **env_extra)
    log = data_dir.parent / f"serve-{port}.log"
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    process = spawn(args if worker else [*args, "--no-worker"], env, log)
    server = LiveServer(f"http://127.0.0.1:{port}", data_dir, env, log)
    try:
        wait_healthy(server.url, log, worker=worker)
        yield server, process
    finally:
        stop(process)


def follow_events(client: httpx.Client, run_id: int, timeout: float = 300) -> list[dict]:
    """Read the run's Server-Sent Events until ``end``; returns every payload in order."""
    return list(run_events(client, run_id, timeout))


def signup(client: httpx.Client) -> str:
    response = client.post(
        "/api/auth/signup", json={"email": "e2e@example.com", "password": "correct horse"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])
