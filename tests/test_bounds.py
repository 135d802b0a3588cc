"""Integers from users are bounded in the schemas: 422 with a message, never a 500."""

from __future__ import annotations

import pytest

HUGE = 2**63  # overflowed SQLite's INTEGER (a 500) before the bounds


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/projects/{huge}"),
        ("GET", "/api/projects/{pid}/labels/{huge}/x"),
        ("PATCH", "/api/projects/{pid}/labels/{huge}"),
        ("DELETE", "/api/projects/{pid}/labels/{huge}"),
        ("GET", "/api/images/{huge}"),
        ("GET", "/api/images/{huge}/thumbnail"),
        ("DELETE", "/api/images/{huge}"),
        ("GET", "/api/runs/{huge}"),
        ("GET", "/api/runs/{huge}/predictions"),
        ("POST", "/api/runs/{huge}/cancel"),
        ("GET", "/api/projects/2147483648"),
    ],
)
def test_ids_no_row_can_have_are_422_in_paths(client, user, project, method, path) -> None:  # type: ignore[no-untyped-def]
    url = path.format(huge=HUGE, pid=project["id"])
    response = client.request(method, url, json={}, headers=user.headers)
    if url.endswith("/x"):
        assert response.status_code in (404, 405)
        return
    assert response.status_code == 422, response.text
    assert "less than or equal to 2147483647" in response.json()["detail"]


def test_ids_no_row_can_have_are_422_in_bulk_bodies(client, user, project) -> None:  # type: ignore[no-untyped-def]
    base = f"/api/projects/{project['id']}/images"
    for method, url in (("PATCH", base), ("POST", f"{base}/delete")):
        response = client.request(method, url, json={"ids": [1, HUGE]}, headers=user.headers)
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith("ids.1:")


def test_huge_offsets_are_422(client, user, project) -> None:  # type: ignore[no-untyped-def]
    response = client.get(
        f"/api/projects/{project['id']}/images", params={"offset": HUGE}, headers=user.headers
    )
    assert response.status_code == 422, response.text


def test_pages_with_ids_no_row_can_have_are_html_404(client, user) -> None:  # type: ignore[no-untyped-def]
    client.cookies.clear()
    login = client.post(
        "/api/auth/login", json={"email": user.email, "password": "correct horse battery"}
    )
    assert login.status_code == 200
    for path in (f"/projects/{HUGE}", f"/runs/{HUGE}"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")


def test_run_seed_beyond_32_bits_is_422_before_anything_is_queued(client, user, project) -> None:  # type: ignore[no-untyped-def]
    url = f"/api/projects/{project['id']}/runs"
    response = client.post(url, json={"options": {"seed": 2**32}}, headers=user.headers)
    assert response.status_code == 422
    assert "options.seed" in response.json()["detail"]
    assert client.get(url, headers=user.headers).json() == []


def test_strings_are_not_numbers_or_booleans_but_5_0_is_5(client, user, project) -> None:  # type: ignore[no-untyped-def]
    """Bodies are strict, so the server accepts what the schema says and nothing else."""

    def token(days: object):  # type: ignore[no-untyped-def]
        body = {"name": "ci", "expires_in_days": days}
        return client.post("/api/auth/tokens", json=body, headers=user.headers)

    as_text = token("7")
    assert as_text.status_code == 422 and "expires_in_days" in as_text.json()["detail"]
    as_float = token(7.0)
    assert as_float.status_code == 201, as_float.text
    runs = f"/api/projects/{project['id']}/runs"
    response = client.post(runs, json={"options": {"pretrained": "0"}}, headers=user.headers)
    assert response.status_code == 422 and "options.pretrained" in response.json()["detail"]
    assert client.get(runs, headers=user.headers).json() == []
