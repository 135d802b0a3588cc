"""Browsing, relabelling, resplitting, deleting and serving images; who may touch them."""

from __future__ import annotations

import hashlib

import pytest

from tests.images.conftest import distinct_pictures, picture


@pytest.fixture
def gallery(accept) -> dict[str, int]:
    """Seven images: 3 ants (2 train, 1 val), 2 bees (test), 2 unlabeled (no split)."""
    p = distinct_pictures(7)
    ids = {}
    for names, label, split in (
        (("a1", "a2"), "ants", "train"),
        (("a3",), "ants", "val"),
        (("b1", "b2"), "bees", "test"),
        (("u1", "u2"), None, None),
    ):
        files = [(f"{name}.jpg", p[len(ids) + i]) for i, name in enumerate(names)]
        for accepted in accept(files, label=label, split=split)["accepted"]:
            ids[accepted["filename"].removesuffix(".jpg")] = accepted["id"]
    return ids


def names(page: dict) -> list[str]:
    return [item["filename"].removesuffix(".jpg") for item in page["items"]]


def test_filters_by_label_split_and_unlabeled(gallery, list_images):
    assert names(list_images()) == ["a1", "a2", "a3", "b1", "b2", "u1", "u2"]
    assert names(list_images(label="ants")) == ["a1", "a2", "a3"]
    assert names(list_images(label="ants", split="train")) == ["a1", "a2"]
    assert names(list_images(split="test")) == ["b1", "b2"]
    assert names(list_images(split="unassigned")) == ["u1", "u2"]
    assert names(list_images(unlabeled="true")) == ["u1", "u2"]
    assert names(list_images(unlabeled="true", split="")) == ["u1", "u2"]
    assert list_images(label="wasps") == {"items": [], "total": 0}


def test_pages_with_limit_and_offset(gallery, list_images):
    page = list_images(limit=3, offset=2)
    assert names(page) == ["a3", "b1", "b2"] and page["total"] == 7
    assert names(list_images(limit=3, offset=6)) == ["u2"]
    assert list_images(offset=50)["items"] == []
    assert list_images(limit=500)["total"] == 7


def test_bad_list_parameters_are_422(client, user, project):
    for params in (
        {"limit": 0},
        {"limit": 501},
        {"limit": "many"},
        {"offset": -1},
        {"split": "validation"},
        {"unlabeled": "maybe"},
    ):
        response = client.get(
            f"/api/projects/{project['id']}/images", params=params, headers=user.headers
        )
        assert response.status_code == 422, params
        assert response.json()["detail"], params


def test_filters_combine_so_a_label_and_unlabeled_find_nothing(client, user, project):
    # Valid by the schema, so not a 422: images with label "ants" and without a label.
    response = client.get(
        f"/api/projects/{project['id']}/images",
        params={"label": "ants", "unlabeled": "true"},
        headers=user.headers,
    )
    assert response.status_code == 200 and response.json() == {"items": [], "total": 0}


def test_bulk_relabel_creates_the_label_and_leaves_split_alone(
    gallery, client, user, project, list_images
):
    ids = [gallery["a1"], gallery["u1"]]
    response = client.patch(
        f"/api/projects/{project['id']}/images",
        json={"ids": ids, "label": "wasps"},
        headers=user.headers,
    )
    assert response.json() == {"updated": 2}
    assert names(list_images(label="wasps")) == ["a1", "u1"]
    items = {item["filename"]: item for item in list_images()["items"]}
    assert (items["a1.jpg"]["split"], items["u1.jpg"]["split"]) == ("train", None)
    labels = client.get(f"/api/projects/{project['id']}", headers=user.headers).json()["labels"]
    assert {label["name"]: label["count"] for label in labels} == {"ants": 2, "bees": 2, "wasps": 2}


def test_bulk_unlabel_and_resplit(gallery, client, user, project, list_images):
    url = f"/api/projects/{project['id']}/images"
    ids = [gallery["b1"], gallery["u2"]]
    assert client.patch(url, json={"ids": ids, "label": None}, headers=user.headers).json() == {
        "updated": 2
    }
    assert names(list_images(unlabeled="true")) == ["b1", "u1", "u2"]

    client.patch(url, json={"ids": ids, "split": "val"}, headers=user.headers)
    items = {item["filename"]: item for item in list_images()["items"]}
    assert items["u2.jpg"]["split"] == "val" and items["u2.jpg"]["split_source"] == "user"
    assert items["b1.jpg"]["label"] is None  # the label stays as it was

    client.patch(url, json={"ids": [gallery["u2"]], "split": None}, headers=user.headers)
    item = next(i for i in list_images()["items"] if i["filename"] == "u2.jpg")
    assert item["split"] is None and item["split_source"] is None


def test_bulk_update_of_images_outside_the_project_is_404_and_changes_nothing(
    gallery, accept, client, user, project, list_images
):
    other = client.post("/api/projects", json={"name": "Other"}, headers=user.headers).json()
    foreign = accept([("f.jpg", picture(color=(5, 5, 5)))], pid=other["id"])["accepted"][0]["id"]
    response = client.patch(
        f"/api/projects/{project['id']}/images",
        json={"ids": [gallery["a1"], foreign, 99999], "label": "x"},
        headers=user.headers,
    )
    assert response.status_code == 404
    assert f"{foreign}, 99999" in response.json()["detail"]
    assert names(list_images(label="ants")) == ["a1", "a2", "a3"]


def test_bad_bulk_updates_are_422(gallery, client, user, project, list_images):
    for body in (
        {"ids": [], "label": "x"},
        {"label": "x"},
        {"ids": [gallery["a1"]], "split": "validation"},
        {"ids": [gallery["a1"]], "label": "   "},
        {"ids": [gallery["a1"]], "label": "x" * 101},
        {"ids": ["one"]},
    ):
        response = client.patch(
            f"/api/projects/{project['id']}/images", json=body, headers=user.headers
        )
        assert response.status_code == 422, body
    assert names(list_images(label="ants", split="train")) == ["a1", "a2"]


def test_bulk_delete_removes_rows_and_unshared_blobs(
    gallery, client, user, project, list_images, disk
):
    blobs = disk.blobs
    response = client.post(
        f"/api/projects/{project['id']}/images/delete",
        json={"ids": [gallery["a1"], gallery["b2"]]},
        headers=user.headers,
    )
    assert response.json() == {"deleted": 2}
    assert names(list_images()) == ["a2", "a3", "b1", "u1", "u2"]
    assert len(disk.blobs) == len(blobs) - 2 and len(disk.thumbnails) == len(blobs) - 2
    gone = client.get(f"/api/images/{gallery['a1']}/file", headers=user.headers)
    assert gone.status_code == 404


def test_bulk_delete_of_foreign_ids_is_404_and_deletes_nothing(
    gallery, client, user, project, list_images
):
    response = client.post(
        f"/api/projects/{project['id']}/images/delete",
        json={"ids": [gallery["a1"], 4242]},
        headers=user.headers,
    )
    assert response.status_code == 404 and "4242" in response.json()["detail"]
    assert list_images()["total"] == 7


def test_delete_keeps_the_blob_while_another_project_uses_it(accept, client, user, disk):
    other = client.post("/api/projects", json={"name": "Other"}, headers=user.headers).json()
    data = picture()
    sha = hashlib.sha256(data).hexdigest()
    first = accept([("a.jpg", data)])["accepted"][0]["id"]
    second = accept([("a.jpg", data)], pid=other["id"])["accepted"][0]["id"]

    assert client.delete(f"/api/images/{first}", headers=user.headers).status_code == 204
    assert disk.blobs == {sha}
    assert client.get(f"/api/images/{second}/file", headers=user.headers).content == data
    assert client.get(f"/api/images/{first}", headers=user.headers).status_code == 404

    assert client.delete(f"/api/images/{second}", headers=user.headers).status_code == 204
    assert disk.blobs == set() and disk.thumbnails == set()


def test_deleted_then_uploaded_again_is_accepted_anew(accept, client, user):
    data = picture()
    first = accept([("a.jpg", data)])["accepted"][0]["id"]
    client.delete(f"/api/images/{first}", headers=user.headers)
    again = accept([("a.jpg", data)])
    assert len(again["accepted"]) == 1 and again["duplicates"] == []
    image_id = again["accepted"][0]["id"]
    assert client.get(f"/api/images/{image_id}/file", headers=user.headers).content == data


def test_files_are_served_with_their_verified_type_and_safe_headers(accept, client, user):
    png = picture("PNG")
    image_id = accept([("photo.jpg", png)])["accepted"][0]["id"]  # the name lies, the bytes don't

    response = client.get(f"/api/images/{image_id}/file", headers=user.headers)
    assert response.status_code == 200 and response.content == png
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"].startswith("private")
    assert response.headers["content-disposition"].startswith("inline")

    thumb = client.get(f"/api/images/{image_id}/thumbnail", headers=user.headers)
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
    assert thumb.headers["content-type"] == "image/jpeg"
    assert thumb.headers["x-content-type-options"] == "nosniff"
    assert thumb.headers["cache-control"].startswith("private")


def test_a_missing_blob_is_404_not_500(accept, client, user, disk, settings_env):
    image_id = accept([("a.jpg", picture())])["accepted"][0]["id"]
    for path in (settings_env / "images").rglob("*"):
        if path.is_file():
            path.unlink()
    response = client.get(f"/api/images/{image_id}/file", headers=user.headers)
    assert response.status_code == 404 and "missing" in response.json()["detail"]


def test_another_users_images_are_404(gallery, client, make_user, project):
    intruder = make_user()
    image_id = gallery["a1"]
    pid = project["id"]
    for method, url, kwargs in (
        ("get", f"/api/images/{image_id}", {}),
        ("get", f"/api/images/{image_id}/file", {}),
        ("get", f"/api/images/{image_id}/thumbnail", {}),
        ("delete", f"/api/images/{image_id}", {}),
        ("get", f"/api/projects/{pid}/images", {}),
        ("patch", f"/api/projects/{pid}/images", {"json": {"ids": [image_id], "label": "x"}}),
        ("post", f"/api/projects/{pid}/images/delete", {"json": {"ids": [image_id]}}),
        ("post", f"/api/projects/{pid}/images", {"files": [("files", ("a.jpg", picture()))]}),
    ):
        response = client.request(method.upper(), url, headers=intruder.headers, **kwargs)
        assert response.status_code == 404, (method, url)


def test_intruder_cannot_move_their_images_into_my_project_by_id(
    gallery, accept, client, make_user
):
    intruder = make_user()
    theirs = client.post("/api/projects", json={"name": "Mine"}, headers=intruder.headers).json()
    response = client.patch(
        f"/api/projects/{theirs['id']}/images",
        json={"ids": [gallery["a1"]], "split": "test"},
        headers=intruder.headers,
    )
    assert response.status_code == 404


def test_every_image_route_needs_a_token(gallery, client, project):
    image_id = gallery["a1"]
    pid = project["id"]
    for method, url in (
        ("GET", f"/api/images/{image_id}"),
        ("GET", f"/api/images/{image_id}/file"),
        ("GET", f"/api/images/{image_id}/thumbnail"),
        ("DELETE", f"/api/images/{image_id}"),
        ("GET", f"/api/projects/{pid}/images"),
        ("PATCH", f"/api/projects/{pid}/images"),
        ("POST", f"/api/projects/{pid}/images/delete"),
        ("POST", f"/api/projects/{pid}/images"),
    ):
        assert client.request(method, url).status_code == 401, (method, url)
    bogus = {"Authorization": "Bearer adl_not-a-real-token"}
    assert client.get(f"/api/images/{image_id}/file", headers=bogus).status_code == 401


def test_cookie_upload_needs_the_csrf_header(client, make_user, project, user):
    login = client.post(
        "/api/auth/login", json={"email": user.email, "password": "correct horse battery"}
    )
    csrf = login.cookies.get("autodl_csrf") or client.cookies.get("autodl_csrf")
    url = f"/api/projects/{project['id']}/images"
    files = [("files", ("a.jpg", picture()))]
    assert client.post(url, files=files).status_code == 403
    response = client.post(url, files=files, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200 and len(response.json()["accepted"]) == 1
    client.cookies.clear()


def test_select_all_matching_the_filter_beyond_one_page(accept, client, user, project):
    pictures = distinct_pictures(5)
    accept([(f"a{i}.jpg", p) for i, p in enumerate(pictures[:3])], label="ants", split="train")
    accept([(f"b{i}.jpg", p) for i, p in enumerate(pictures[3:])], label="bees")
    url = f"/api/projects/{project['id']}/images"
    page = client.get(url, params={"label": "ants", "limit": 1}, headers=user.headers).json()
    assert len(page["items"]) == 1 and page["total"] == 3
    matching = client.get(f"{url}/ids", params={"label": "ants"}, headers=user.headers).json()
    assert matching["total"] == 3 and len(matching["ids"]) == 3
    # The ids go to the bulk change as they are: every ant moves, on every page.
    moved = client.patch(url, json={"ids": matching["ids"], "split": "val"}, headers=user.headers)
    assert moved.json() == {"updated": 3}
    unassigned = client.get(f"{url}/ids", params={"split": "unassigned"}, headers=user.headers)
    assert unassigned.json()["total"] == 2
