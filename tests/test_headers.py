"""Security headers on every kind of response: JSON, errors, static files, pages, images."""

from __future__ import annotations

import pytest

from tests.images.conftest import picture


def assert_hardened(response) -> None:  # type: ignore[no-untyped-def]
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff", response.request.url
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


@pytest.mark.parametrize(
    "path", ["/api/health?worker=false", "/api/projects", "/api/nowhere", "/static/js/api.js"]
)
def test_json_errors_and_static_files_are_hardened(client, path) -> None:  # type: ignore[no-untyped-def]
    assert_hardened(client.get(path))


def test_pages_keep_their_own_policy_and_get_the_rest(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/login")
    assert_hardened(response)
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_image_files_validation_errors_and_413_are_hardened(client, user, project) -> None:  # type: ignore[no-untyped-def]
    uploaded = client.post(
        f"/api/projects/{project['id']}/images",
        files=[("files", ("a.jpg", picture(), "image/jpeg"))],
        headers=user.headers,
    )
    image = uploaded.json()["accepted"][0]
    served = client.get(f"/api/images/{image['id']}/file", headers=user.headers)
    assert_hardened(served)
    assert "sandbox" in served.headers["content-security-policy"]
    assert_hardened(client.post("/api/projects", json={}, headers=user.headers))
    too_large = client.post(
        "/api/projects", content=b"x", headers={**user.headers, "content-length": str(2**40)}
    )
    assert too_large.status_code == 413
    assert_hardened(too_large)
