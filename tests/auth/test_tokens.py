"""Every token expires on the server: sliding browser sessions, fixed-lifetime API tokens,
and a list of one's tokens to revoke from."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from backend.auth.models import ApiToken
from backend.auth.security import SESSION_COOKIE, token_digest
from backend.config import get_settings
from backend.db import session_scope

PASSWORD = "correct horse battery"


@pytest.fixture
def short_sessions(client, monkeypatch):  # type: ignore[no-untyped-def]
    """Sessions that end after 2 idle seconds."""
    monkeypatch.setenv("AUTODL_SESSION_MAX_AGE_S", "2")
    get_settings.cache_clear()
    return 2.0


def log_in(client, user) -> str:  # type: ignore[no-untyped-def]
    response = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def test_an_idle_session_expires_as_bearer_and_as_a_replayed_cookie(
    client, user, short_sessions
) -> None:  # type: ignore[no-untyped-def]
    token = log_in(client, user)
    cookie = client.cookies[SESSION_COOKIE]
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/auth/me", headers=bearer).status_code == 200
    time.sleep(short_sessions + 0.5)
    assert client.get("/api/auth/me", headers=bearer).status_code == 401
    client.cookies.set(SESSION_COOKIE, cookie)
    assert client.get("/api/auth/me").status_code == 401
    page = client.get("/projects", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_a_session_in_use_slides_and_its_cookie_is_renewed(client, user, short_sessions) -> None:  # type: ignore[no-untyped-def]
    log_in(client, user)
    started = time.monotonic()
    renewed = []
    while time.monotonic() - started < 2 * short_sessions:  # well past one lifetime
        time.sleep(0.5)
        for path in ("/api/projects", "/projects"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 200, (path, time.monotonic() - started)
            renewed.append(
                any(
                    c.startswith(f"{SESSION_COOKIE}=")
                    for c in response.headers.get_list("set-cookie")
                )
            )
    assert all(renewed[::2]), "every slide of the session re-sends its cookie"


def test_api_tokens_have_a_fixed_lifetime_and_can_be_listed_and_revoked(
    client, user, make_user
) -> None:  # type: ignore[no-untyped-def]
    made = client.post(
        "/api/auth/tokens",
        json={"name": "nightly sync", "expires_in_days": 30},
        headers=user.headers,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    lifetime = datetime.fromisoformat(body["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=29, hours=23) < lifetime <= timedelta(days=30)
    script = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/api/projects", headers=script).status_code == 200

    other = make_user()  # someone else's session is not listed
    listed = client.get("/api/auth/tokens", headers=script).json()
    assert sorted(t["kind"] for t in listed) == ["api", "session"]
    (mine,) = [t for t in listed if t["current"]]
    assert mine["id"] == body["id"] and mine["expires_at"] == body["expires_at"]  # never slides
    assert mine["last_used_at"] is not None
    assert body["token"] not in str(listed)

    assert client.delete(f"/api/auth/tokens/{body['id']}", headers=other.headers).status_code == 404
    assert client.delete(f"/api/auth/tokens/{body['id']}", headers=user.headers).status_code == 204
    assert client.get("/api/projects", headers=script).status_code == 401
    assert client.get("/api/projects", headers=user.headers).status_code == 200


def test_an_api_token_past_its_lifetime_is_401(client, user) -> None:  # type: ignore[no-untyped-def]
    made = client.post(
        "/api/auth/tokens", json={"name": "ci", "expires_in_days": 1}, headers=user.headers
    ).json()
    with session_scope() as session:  # a day and a second later
        session.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == token_digest(made["token"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    response = client.get("/api/projects", headers={"Authorization": f"Bearer {made['token']}"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    listed = client.get("/api/auth/tokens", headers=user.headers).json()
    assert [t["kind"] for t in listed] == ["session"]  # the expired one is not listed


@pytest.mark.parametrize(
    "body",
    [{"name": "x"}, {"name": "x", "expires_in_days": 0}, {"name": "x", "expires_in_days": 367}],
)
def test_api_tokens_need_an_explicit_bounded_lifetime(client, user, body) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/api/auth/tokens", json=body, headers=user.headers)
    assert response.status_code == 422
    assert "expires_in_days" in response.json()["detail"]
