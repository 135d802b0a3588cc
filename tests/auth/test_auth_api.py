"""Signing up, logging in and out, tokens, the session cookie and its CSRF protection."""

from __future__ import annotations

import pytest

from backend.auth.security import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE

PASSWORD = "correct horse battery"


def signup(client, email="ada@example.com", password=PASSWORD):
    return client.post("/api/auth/signup", json={"email": email, "password": password})


def test_signup_returns_a_working_token_and_the_user(client):
    response = signup(client, email="Ada@Example.COM")
    assert response.status_code == 201
    body = response.json()
    assert body["user"]["email"] == "ada@example.com"
    assert "password" not in str(body["user"]).lower()
    assert body["token"].startswith("adl_")
    client.cookies.clear()
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.json()["email"] == "ada@example.com"


def test_signup_twice_with_one_email_is_409(client):
    assert signup(client).status_code == 201
    response = signup(client, email="ADA@example.com")
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD},
        {"email": " ada@example.com", "password": PASSWORD},  # the schema allows no spaces
        {"email": "ada@example.com\n", "password": PASSWORD},
        {"email": "ada@example.com", "password": 12345678},  # JSON types are taken as declared
        {"email": "ada@example.com", "password": "short"},
        {"email": "ada@example.com"},
        {},
    ],
)
def test_bad_signups_are_422_with_a_message(client, body):
    response = client.post("/api/auth/signup", json=body)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_login_returns_a_token_and_sets_the_session_cookies(client):
    signup(client)
    client.cookies.clear()
    response = client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.json()["token"].startswith("adl_")
    assert response.cookies.get(SESSION_COOKIE)
    assert response.cookies.get(CSRF_COOKIE)
    set_cookie = " ".join(response.headers.get_list("set-cookie")).lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie
    assert client.get("/api/auth/me").status_code == 200  # the cookie alone reads


@pytest.mark.parametrize(
    ("email", "password"), [("ada@example.com", "wrong password"), ("bob@example.com", PASSWORD)]
)
def test_wrong_credentials_are_401(client, email, password):
    signup(client)
    client.cookies.clear()
    response = client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 401
    assert "do not match" in response.json()["detail"]
    assert SESSION_COOKIE not in response.cookies


def test_logout_revokes_the_token(client):
    token = signup(client).json()["token"]
    client.cookies.clear()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/auth/me", headers=headers).status_code == 401


def test_logout_by_cookie_clears_the_session(client):
    signup(client)
    csrf = client.cookies.get(CSRF_COOKIE)
    assert client.post("/api/auth/logout", headers={CSRF_HEADER: csrf}).status_code == 204
    assert client.get("/api/auth/me").status_code == 401


def test_api_routes_answer_401_without_a_token(client):
    for method, url in (
        ("GET", "/api/auth/me"),
        ("POST", "/api/auth/logout"),
        ("GET", "/api/projects"),
        ("POST", "/api/projects"),
        ("GET", "/api/projects/1"),
        ("GET", "/api/projects/1/labels"),
    ):
        response = client.request(method, url)
        assert response.status_code == 401, (method, url)
        assert "Bearer" in response.json()["detail"]
    bogus = client.get("/api/projects", headers={"Authorization": "Bearer adl_forged"})
    assert bogus.status_code == 401
    assert client.get("/api/health", params={"worker": "false"}).status_code == 200


def test_cookie_writes_need_the_csrf_header(client):
    signup(client)
    assert client.cookies.get(SESSION_COOKIE)
    csrf = client.cookies.get(CSRF_COOKIE)

    assert client.get("/api/projects").status_code == 200  # reads need no CSRF token
    missing = client.post("/api/projects", json={"name": "P"})
    assert missing.status_code == 403 and "CSRF" in missing.json()["detail"]
    wrong = client.post("/api/projects", json={"name": "P"}, headers={CSRF_HEADER: "0" * 64})
    assert wrong.status_code == 403
    assert client.get("/api/projects").json() == []

    made = client.post("/api/projects", json={"name": "P"}, headers={CSRF_HEADER: csrf})
    assert made.status_code == 201
    pid = made.json()["id"]
    assert client.delete(f"/api/projects/{pid}").status_code == 403
    assert client.delete(f"/api/projects/{pid}", headers={CSRF_HEADER: csrf}).status_code == 204


def test_one_users_csrf_token_does_not_fit_another_session(client):
    signup(client, email="ada@example.com")
    ada_csrf = client.cookies.get(CSRF_COOKIE)
    client.cookies.clear()
    signup(client, email="bob@example.com")
    response = client.post("/api/projects", json={"name": "P"}, headers={CSRF_HEADER: ada_csrf})
    assert response.status_code == 403


def test_bearer_writes_need_no_csrf_header(client):
    token = signup(client).json()["token"]
    client.cookies.clear()
    response = client.post(
        "/api/projects", json={"name": "P"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"email": "ada@example.com", "password": "Zq9#k2!"},  # too short: the password is the input
        {"password": "Zq9#k2!-long-secret"},  # no email: the whole body, password inside, is
        {"email": ["ada@example.com"], "password": "Zq9#k2!-long-secret"},
    ],
)
def test_validation_errors_never_echo_the_password(client, body):
    response = client.post("/api/auth/signup", json=body)
    assert response.status_code == 422
    assert "Zq9#k2!" not in response.text
    assert response.json()["errors"][0]["loc"][0] == "body"
