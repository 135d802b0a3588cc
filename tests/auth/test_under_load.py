"""Many people at once on one SQLite database: no request waits for a database connection,
a read request never holds the write lock, and a storm of log-ins does not deadlock the
API's worker threads (bench/load.py found all three as 500s)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import anyio.to_thread
import httpx
import pytest
from sqlalchemy import text, update
from starlette.requests import Request

from backend.auth import security
from backend.auth.models import ApiToken
from backend.auth.security import token_digest
from backend.db import session_scope, utcnow
from backend.deps import token_user
from tests.e2e.server import live_server

PASSWORD = "correct horse battery"


def api_worker_threads() -> int:
    """How many sync routes and dependencies the API runs at once (anyio's default)."""

    async def tokens() -> int:
        return int(anyio.to_thread.current_default_thread_limiter().total_tokens)

    return anyio.run(tokens)


def test_every_api_worker_thread_gets_a_database_connection_at_once(settings_env: Path) -> None:
    """Each sync request holds a connection; SQLAlchemy's default pool (5 + 10) made the 16th
    wait 30 s and fail. Every thread takes one and waits for all the others to hold theirs."""
    threads = api_worker_threads() + 8  # SSE polls and background threads take some too
    everyone_holds_one = threading.Barrier(threads, timeout=10)

    def request() -> None:
        with session_scope() as session:
            session.execute(text("SELECT 1"))
            everyone_holds_one.wait()

    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(request) for _ in range(threads)]:
            done.result()


def _database(settings_env: Path) -> Path:
    return settings_env / "autodl.db"


def test_a_read_request_whose_session_slides_does_not_hold_the_write_lock(
    client, user, settings_env: Path
) -> None:  # type: ignore[no-untyped-def]
    """Sliding a session's expiry is a write. Made in the request's transaction it held
    SQLite's write lock until the request ended (a listing, a prediction), and every upload,
    log-in and worker update waited behind it."""
    digest = token_digest(user.token)
    long_ago = utcnow() - timedelta(hours=1)
    with session_scope() as session:  # last used an hour ago: this use slides it
        session.execute(
            update(ApiToken).where(ApiToken.token_hash == digest).values(last_used_at=long_ago)
        )
    request = Request({"type": "http", "method": "GET", "headers": [], "path": "/"})
    with session_scope() as request_session:  # a GET in progress, as get_session opens it
        assert token_user(request, request_session, user.token, from_cookie=False) is not None
        request_session.execute(text("SELECT count(*) FROM project"))  # the route reads on
        # ... while another process writes, without waiting at all:
        other = sqlite3.connect(_database(settings_env), timeout=0)
        try:
            other.execute('UPDATE "user" SET email = email')
            other.commit()
            (slid_to,) = other.execute(
                "SELECT last_used_at FROM api_token WHERE token_hash = ?", (digest,)
            ).fetchone()
        finally:
            other.close()
    slid = datetime.fromisoformat(slid_to).replace(tzinfo=UTC)
    assert slid > long_ago + timedelta(minutes=59), "the slide was committed at once"


def test_password_hashing_takes_turns_by_the_cores(settings_env: Path) -> None:
    """40 request threads hashing at once starved the process; hashing waits for a core."""
    running, most = 0, 0
    lock = threading.Lock()
    real_verify = security.PasswordHasher.verify

    def counted(self, hash_, password):  # type: ignore[no-untyped-def]
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        try:
            return real_verify(self, hash_, password)
        finally:
            with lock:
                running -= 1

    digest = security.hash_password(PASSWORD)
    slots = security.HASHING_SLOT_COUNT
    with (
        mock.patch.object(security.PasswordHasher, "verify", counted),
        ThreadPoolExecutor(4 * slots + 4) as pool,
    ):
        results = list(pool.map(lambda _: security.verify_password(digest, PASSWORD), range(24)))
    assert all(results)
    assert most <= slots, f"{most} hashes at once on {slots} cores"


@pytest.mark.slow
def test_fifty_people_logging_in_at_once_all_get_in(tmp_path: Path) -> None:
    """Production argon2 cost, 60 log-ins at once against `autodl serve`. Before, the new
    session's INSERT held SQLite's write lock until the answer was serialized, which needs an
    API worker thread, and all 40 were taken by log-ins waiting for that lock: a third to a
    half of them answered 500 after the 30-second busy timeout."""
    with live_server(
        tmp_path / "data", worker=False, AUTODL_SIGNUP="open", AUTODL_RATE_LIMIT_LOGIN="1000/minute"
    ) as (server, _):
        body = {"email": "crowd@example.com", "password": PASSWORD}
        server.client().post("/api/auth/signup", json=body).raise_for_status()

        def log_in(_: int) -> int:
            return httpx.post(f"{server.url}/api/auth/login", json=body, timeout=180).status_code

        with ThreadPoolExecutor(60) as pool:
            statuses = Counter(pool.map(log_in, range(60)))
        log = server.log.read_text(errors="replace")
    assert statuses == {200: 60}, (statuses, [ln for ln in log.splitlines() if "Error" in ln][:5])
