"""The HTML routes without a browser: sessions, ownership, escaping, the local Plotly file."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.conftest import ApiUser

XSS = "<img src=x onerror=alert(1)>"


def sign_in(client: TestClient, email: str = "pages@example.com") -> None:
    response = client.post(
        "/api/auth/signup", json={"email": email, "password": "correct horse battery"}
    )
    assert response.status_code == 201, response.text


def test_pages_without_a_session_redirect_to_login(client: TestClient) -> None:
    for path in ("/projects", "/projects/1", "/runs/1"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=%2F")
    assert client.get("/login").status_code == 200


def test_the_first_screen_explains_the_app_and_a_new_server_asks_for_its_admin(
    client: TestClient,
) -> None:
    fresh = client.get("/")
    assert fresh.status_code == 200
    assert "Create the admin account" in fresh.text and 'href="/signup"' in fresh.text
    sign_in(client)
    assert client.get("/", follow_redirects=False).headers["location"] == "/projects"
    client.cookies.clear()
    page = client.get("/").text
    for step in ("Drop your pictures", "Train", "Use the model"):
        assert step in page
    assert "Create an account" in page and "Create the admin account" not in page


def test_a_revoked_session_cookie_is_no_session(client: TestClient) -> None:
    client.cookies.set("autodl_session", "adl_not-a-real-token")
    response = client.get("/projects", follow_redirects=False)
    assert response.status_code == 303


def test_login_never_redirects_off_site(client: TestClient) -> None:
    sign_in(client)
    # Browsers drop tabs and newlines and read "\\" as "/": each of these is //evil.example.
    crafted = ("/\t/evil.example/x", "/\n/evil.example/x", "/\r\n\t/evil.example", "/\t\\evil.x")
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", *crafted):
        response = client.get("/login", params={"next": target}, follow_redirects=False)
        assert response.headers["location"] == "/projects"
    response = client.get("/login", params={"next": "/projects/7"}, follow_redirects=False)
    assert response.headers["location"] == "/projects/7"


def test_names_are_escaped_in_the_html(client: TestClient) -> None:
    sign_in(client)
    csrf = client.cookies["autodl_csrf"]
    project = client.post(
        "/api/projects", json={"name": XSS}, headers={"X-CSRF-Token": csrf}
    ).json()
    html = client.get(f"/projects/{project['id']}").text
    assert XSS not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_another_users_project_and_run_pages_are_not_found(
    client: TestClient, user: ApiUser
) -> None:
    theirs = client.post("/api/projects", json={"name": "Theirs"}, headers=user.headers).json()
    sign_in(client, "someone-else@example.com")
    for path in (f"/projects/{theirs['id']}", "/projects/999999", "/runs/999999"):
        response = client.get(path)
        assert response.status_code == 404
        assert "text/html" in response.headers["content-type"]
        assert "Theirs" not in response.text


def test_plotly_is_served_from_the_installed_package_with_long_caching(
    client: TestClient,
) -> None:
    response = client.get("/static/vendor/plotly.min.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "immutable" in response.headers["cache-control"]
    assert len(response.content) > 1_000_000
    assert client.head("/static/vendor/plotly.min.js").status_code == 200


def test_pages_reference_only_local_assets_under_a_strict_policy(client: TestClient) -> None:
    sign_in(client)
    for path in ("/projects", "/login"):
        response = client.get(path, follow_redirects=True)
        assert "http://" not in response.text and "https://" not in response.text
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_scripts_never_parse_data_as_html() -> None:
    """Text goes into the page as text nodes; no script builds markup from strings."""
    from backend.pages.router import STATIC_DIR

    scripts = sorted((STATIC_DIR / "js").glob("*.js"))
    assert scripts
    for script in scripts:
        source = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, f"{script.name} uses {sink}"
        external = [
            url
            for url in re.findall(r"https?://[^\s\"'`)]+", source)
            if url != "http://www.w3.org/2000/svg"
        ]
        assert external == [], f"{script.name} refers to {external}"
