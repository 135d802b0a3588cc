"""Who may have an account: sign-up modes, the first admin, invitations, disabling,
password resets, password strength, and answers that do not tell which emails exist."""

from __future__ import annotations

import statistics
import time

import pytest

from backend.config import get_settings

STRONG = "correct horse battery"


@pytest.fixture
def signup_mode(monkeypatch):  # type: ignore[no-untyped-def]
    """Run a test under AUTODL_SIGNUP=<mode>; ``None`` is the default (unset)."""

    def use(mode: str | None) -> None:
        if mode is None:
            monkeypatch.delenv("AUTODL_SIGNUP", raising=False)
        else:
            monkeypatch.setenv("AUTODL_SIGNUP", mode)
        get_settings.cache_clear()

    return use


def signup(client, email, password=STRONG, invite=None):  # type: ignore[no-untyped-def]
    client.cookies.clear()
    body = {"email": email, "password": password, "invite": invite}
    return client.post("/api/auth/signup", json=body)


def bearer(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {response.json()['token']}"}


def login(client, email, password=STRONG):  # type: ignore[no-untyped-def]
    client.cookies.clear()
    return client.post("/api/auth/login", json={"email": email, "password": password})


def test_by_default_the_first_account_is_admin_then_sign_up_needs_an_invitation(
    client, signup_mode
) -> None:  # type: ignore[no-untyped-def]
    signup_mode(None)
    first = signup(client, "root@example.com")
    assert first.status_code == 201 and first.json()["user"]["is_admin"] is True
    admin = bearer(first)

    refused = signup(client, "bob@example.com")
    assert refused.status_code == 403 and "by invitation" in refused.json()["detail"]
    forged = signup(client, "bob@example.com", invite="adl_forged")
    assert forged.status_code == 403 and "not valid" in forged.json()["detail"]

    invite = client.post("/api/admin/invites", json={"email": "Bob@Example.com"}, headers=admin)
    assert invite.status_code == 201, invite.text
    assert invite.json()["email"] == "bob@example.com"
    secret = invite.json()["path"].removeprefix("/signup?invite=")
    pending = client.get("/api/admin/invites", headers=admin).json()
    assert [p["email"] for p in pending] == ["bob@example.com"] and pending[0]["path"] is None

    wrong_email = signup(client, "eve@example.com", invite=secret)
    assert wrong_email.status_code == 403 and "another email" in wrong_email.json()["detail"]
    bob = signup(client, "bob@example.com", invite=secret)
    assert bob.status_code == 201 and bob.json()["user"]["is_admin"] is False
    again = signup(client, "bob@example.com", invite=secret)
    assert again.status_code == 403 and "already used" in again.json()["detail"]
    assert client.get("/api/admin/invites", headers=admin).json() == []


def test_signup_page_says_how_to_get_an_account(client, signup_mode) -> None:  # type: ignore[no-untyped-def]
    signup_mode(None)
    assert "Create the admin account" in client.get("/signup").text
    signup(client, "root@example.com")
    client.cookies.clear()
    page = client.get("/signup")
    assert "by invitation" in page.text and 'id="auth-form"' not in page.text
    assert 'id="auth-form"' in client.get("/signup", params={"invite": "adl_x"}).text


def test_closed_sign_up_refuses_even_the_first_account(client, signup_mode) -> None:  # type: ignore[no-untyped-def]
    signup_mode("closed")
    response = signup(client, "root@example.com")
    assert response.status_code == 403 and "closed" in response.json()["detail"]
    assert "Sign-up is closed" in client.get("/signup").text


def test_invitation_sign_up_does_not_tell_which_emails_have_accounts(client, signup_mode) -> None:  # type: ignore[no-untyped-def]
    signup_mode(None)
    signup(client, "root@example.com")
    taken, free = signup(client, "root@example.com"), signup(client, "nobody@example.com")
    assert (taken.status_code, taken.json()) == (free.status_code, free.json())


def test_only_admins_reach_the_admin_api_and_page(client, make_user) -> None:  # type: ignore[no-untyped-def]
    make_user()  # the first account of the server is its admin
    someone = make_user()
    for method, path in (
        ("GET", "/api/admin/users"),
        ("POST", "/api/admin/invites"),
        ("POST", "/api/admin/users/1/disable"),
    ):
        response = client.request(
            method, path, json={"email": "x@example.com"}, headers=someone.headers
        )
        assert response.status_code == 403, path
    client.post("/api/auth/login", json={"email": someone.email, "password": STRONG})
    assert client.get("/admin").status_code == 404
    assert 'id="admin-link"' not in client.get("/projects").text


def test_a_disabled_user_is_signed_out_and_cannot_log_in(client, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = make_user()
    user = make_user()
    made = client.post(
        "/api/auth/tokens", json={"name": "script", "expires_in_days": 30}, headers=user.headers
    ).json()
    script = {"Authorization": f"Bearer {made['token']}"}
    accounts = client.get("/api/admin/users", headers=admin.headers).json()
    uid = next(a["id"] for a in accounts if a["email"] == user.email)

    disabled = client.post(f"/api/admin/users/{uid}/disable", headers=admin.headers)
    assert disabled.status_code == 200 and disabled.json()["disabled_at"]
    assert client.get("/api/projects", headers=user.headers).status_code == 401
    assert client.get("/api/projects", headers=script).status_code == 401
    refused = login(client, user.email)
    assert refused.status_code == 403 and "disabled" in refused.json()["detail"]
    assert login(client, user.email, "wrong password").status_code == 401  # no hint without it

    assert client.post(f"/api/admin/users/{uid}/enable", headers=admin.headers).status_code == 200
    assert login(client, user.email).status_code == 200
    admin_id = next(a["id"] for a in accounts if a["email"] == admin.email)
    own = client.post(f"/api/admin/users/{admin_id}/disable", headers=admin.headers)
    assert own.status_code == 409 and "your own account" in own.json()["detail"]


def test_a_reset_link_signs_out_everywhere_and_sets_a_new_password_once(client, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = make_user()
    user = make_user()
    uid = next(
        a["id"]
        for a in client.get("/api/admin/users", headers=admin.headers).json()
        if a["email"] == user.email
    )
    link = client.post(f"/api/admin/users/{uid}/reset", headers=admin.headers)
    assert link.status_code == 201
    secret = link.json()["path"].removeprefix("/reset?token=")
    assert client.get("/api/projects", headers=user.headers).status_code == 401
    assert "Choose a new password" in client.get(link.json()["path"]).text

    meanwhile = bearer(login(client, user.email))  # the old password works until the reset
    weak = client.post("/api/auth/reset", json={"token": secret, "password": "password"})
    assert weak.status_code == 422 and "common password" in weak.json()["detail"]
    new = "tangerine bicycle orbit"
    done = client.post("/api/auth/reset", json={"token": secret, "password": new})
    assert done.status_code == 200 and done.json()["user"]["email"] == user.email
    assert client.get("/api/projects", headers=meanwhile).status_code == 401
    assert login(client, user.email).status_code == 401
    assert login(client, user.email, new).status_code == 200
    reused = client.post(
        "/api/auth/reset", json={"token": secret, "password": "another fine phrase"}
    )
    assert reused.status_code == 403 and "already used" in reused.json()["detail"]


@pytest.mark.parametrize(
    ("password", "words"),
    [
        ("password", "top-10 common password"),
        ("aaaaaaaa", 'Repeats like "aaa"'),
        ("ada@example.com", "stronger password"),
    ],
)
def test_easily_guessed_passwords_are_refused_in_words(client, password, words) -> None:  # type: ignore[no-untyped-def]
    response = signup(client, "ada@example.com", password)
    assert response.status_code == 422
    assert words in response.json()["detail"]
    assert "stronger password" in response.json()["detail"]


def test_logging_in_with_an_unknown_email_costs_what_a_wrong_password_costs(
    client, make_user, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # The production argon2 cost: the cheap test cost would hide the difference.
    monkeypatch.delenv("AUTODL_PASSWORD_HASH_TIME_COST")
    monkeypatch.delenv("AUTODL_PASSWORD_HASH_MEMORY_KIB")
    get_settings.cache_clear()
    user = make_user()

    def seconds(email: str) -> float:
        started = time.perf_counter()
        assert login(client, email, "not the password").status_code == 401
        return time.perf_counter() - started

    wrong = statistics.median(seconds(user.email) for _ in range(5))
    unknown = statistics.median(seconds("nobody@example.com") for _ in range(5))
    print(f"login: wrong password {wrong * 1000:.0f} ms, unknown email {unknown * 1000:.0f} ms")
    assert unknown > wrong / 3, (wrong, unknown)  # was 28 ms against 249 ms


def test_open_sign_up_with_a_taken_email_costs_what_a_new_account_costs(
    client, signup_mode, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """With AUTODL_SIGNUP=open a taken email is a 409 (documented), but not a quicker one:
    the password is hashed before the email is looked up."""
    monkeypatch.delenv("AUTODL_PASSWORD_HASH_TIME_COST")
    monkeypatch.delenv("AUTODL_PASSWORD_HASH_MEMORY_KIB")
    signup_mode("open")
    assert signup(client, "taken@example.com").status_code == 201

    def seconds(email: str, status: int) -> float:
        started = time.perf_counter()
        assert signup(client, email).status_code == status
        return time.perf_counter() - started

    new = statistics.median(seconds(f"new{i}@example.com", 201) for i in range(5))
    taken = statistics.median(seconds("taken@example.com", 409) for _ in range(5))
    print(f"open sign-up: new email {new * 1000:.0f} ms, taken email {taken * 1000:.0f} ms")
    assert taken > new / 3, (new, taken)
