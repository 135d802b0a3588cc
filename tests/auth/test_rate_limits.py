"""Brute force meets 429 with Retry-After: log-ins per address and per account, sign-ups,
token creation; counts shared by every API process through Redis."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from backend.config import get_settings
from backend.ratelimit import storage_uri
from tests.conftest import redis_test_db, require_redis
from tests.e2e.server import live_server

STRONG = "correct horse battery"
RATE_LIMIT_REDIS_URL = redis_test_db("ratelimit", 7)


@pytest.fixture
def app_with(settings_env, monkeypatch) -> Iterator[Callable[..., TestClient]]:  # type: ignore[no-untyped-def]
    """A fresh API process under the given AUTODL_RATE_LIMIT_* settings."""
    clients: list[TestClient] = []

    def make(**limits: str) -> TestClient:
        from backend.app import create_app

        for name, value in limits.items():
            monkeypatch.setenv(f"AUTODL_RATE_LIMIT_{name.upper()}", value)
        get_settings.cache_clear()
        client = TestClient(create_app())
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def login(client: TestClient, email: str, password: str = "wrong password") -> httpx.Response:
    client.cookies.clear()
    return client.post("/api/auth/login", json={"email": email, "password": password})


def signup(client: TestClient, email: str) -> httpx.Response:
    client.cookies.clear()
    return client.post("/api/auth/signup", json={"email": email, "password": STRONG})


def assert_too_many(response: httpx.Response, window_s: int) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= window_s
    assert "Too many attempts" in response.json()["detail"]


def test_logins_from_one_address_meet_429_with_retry_after(app_with) -> None:  # type: ignore[no-untyped-def]
    client = app_with(login="5/minute")
    answers = [login(client, f"user{i}@example.com").status_code for i in range(5)]
    assert answers == [401] * 5
    assert_too_many(login(client, "someone@example.com"), 60)


def test_failed_logins_lock_the_account_not_the_others_and_unknown_emails_alike(app_with) -> None:  # type: ignore[no-untyped-def]
    client = app_with(login_account="3/minute")
    assert signup(client, "ada@example.com").status_code == 201
    assert signup(client, "bob@example.com").status_code == 201
    for email in ("ada@example.com", "ghost@example.com"):
        assert [login(client, email).status_code for _ in range(3)] == [401] * 3
        assert_too_many(login(client, email, STRONG), 60)  # even the right password waits
    assert login(client, "bob@example.com", STRONG).status_code == 200
    assert_too_many(login(client, "ADA@example.com", STRONG), 60)  # the same account


def test_signups_and_tokens_are_limited(app_with) -> None:  # type: ignore[no-untyped-def]
    client = app_with(signup="2/hour", tokens="2/hour")
    assert [signup(client, f"u{i}@example.com").status_code for i in range(2)] == [201, 201]
    assert_too_many(signup(client, "u3@example.com"), 3600)
    token = login(client, "u0@example.com", STRONG).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    body = {"name": "ci", "expires_in_days": 7}
    made = [
        client.post("/api/auth/tokens", json=body, headers=headers).status_code for _ in range(2)
    ]
    assert made == [201, 201]
    assert_too_many(client.post("/api/auth/tokens", json=body, headers=headers), 3600)


def test_password_resets_from_one_address_meet_429(app_with) -> None:  # type: ignore[no-untyped-def]
    """Guessing reset links is guessing passwords: it counts with the log-ins per address."""
    client = app_with(login="3/minute")
    body = {"token": "adl_not-a-reset-link", "password": STRONG}
    answers = [client.post("/api/auth/reset", json=body).status_code for _ in range(3)]
    assert answers == [403] * 3
    assert_too_many(client.post("/api/auth/reset", json=body), 60)


def test_api_tokens_are_limited_per_account_and_per_address(app_with) -> None:  # type: ignore[no-untyped-def]
    """One account from many addresses meets the account's limit; many accounts from one
    address meet the address's limit."""
    client = app_with(tokens="2/hour")
    tokens = [signup(client, f"t{i}@example.com").json()["token"] for i in range(4)]
    body = {"name": "ci", "expires_in_days": 7}

    def make(token: str, address: str) -> httpx.Response:
        elsewhere = TestClient(client.app, client=(address, 50000))
        bearer = {"Authorization": f"Bearer {token}"}
        return elsewhere.post("/api/auth/tokens", json=body, headers=bearer)

    one_account = [make(tokens[0], f"198.51.100.{i}").status_code for i in range(2)]
    assert one_account == [201, 201]
    assert_too_many(make(tokens[0], "198.51.100.9"), 3600)
    one_address = [make(tokens[i], "203.0.113.5").status_code for i in (1, 2)]
    assert one_address == [201, 201]
    assert_too_many(make(tokens[3], "203.0.113.5"), 3600)


@pytest.mark.redis
def test_every_api_process_counts_the_same_attempts_through_redis(app_with) -> None:  # type: ignore[no-untyped-def]
    store = require_redis(RATE_LIMIT_REDIS_URL)
    store.flushdb()
    first = app_with(login="4/minute", storage_url=RATE_LIMIT_REDIS_URL)
    second = app_with()  # a second process with the same settings
    assert [login(first, "a@example.com").status_code for _ in range(2)] == [401, 401]
    assert [login(second, "b@example.com").status_code for _ in range(2)] == [401, 401]
    assert_too_many(login(first, "c@example.com"), 60)
    assert_too_many(login(second, "c@example.com"), 60)
    store.flushdb()


def test_the_embedded_broker_socket_is_the_store_of_autodl_serve() -> None:
    settings = get_settings().model_copy(
        update={"redis_url": "redis+socket:///data/redis.db.socket", "rate_limit_storage_url": ""}
    )
    assert storage_uri(settings) == "redis+unix:///data/redis.db.socket"
    assert storage_uri(settings.model_copy(update={"redis_url": ""})) == "memory://"


@pytest.mark.slow
def test_autodl_serve_limits_logins_with_its_embedded_redis(tmp_path) -> None:  # type: ignore[no-untyped-def]
    limited = {"AUTODL_RATE_LIMIT_LOGIN": "3/minute"}
    with live_server(tmp_path / "data", worker=False, **limited) as (server, _):
        client = server.client()
        body = {"email": "x@example.com", "password": "wrong password"}
        answers = [client.post("/api/auth/login", json=body).status_code for _ in range(4)]
        socket = re.search(r"embedded Redis at redis\+socket://(\S+)", server.log.read_text())
        assert socket, server.log.read_text()
        counted = redis.Redis(unix_socket_path=socket.group(1)).keys("LIMITS:*login-ip*")
    assert answers == [401, 401, 401, 429]
    assert counted, "counted in the embedded Redis, which every API process shares"
