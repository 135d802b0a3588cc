"""Projects and their labels: CRUD, counts per label and split, ownership."""

from __future__ import annotations

import io

import pytest
from PIL import Image as PILImage

from tests.factories import add_images


def jpeg(shade: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (16, 16), (shade, 100, 100)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_create_list_rename_and_delete_a_project(client, user):
    created = client.post("/api/projects", json={"name": "  Insects  "}, headers=user.headers)
    assert created.status_code == 201
    project = created.json()
    assert project["name"] == "Insects"
    assert (project["image_count"], project["run_count"], project["unlabeled"]) == (0, 0, 0)
    assert project["labels"] == []

    listed = client.get("/api/projects", headers=user.headers).json()
    assert [p["name"] for p in listed] == ["Insects"]

    renamed = client.patch(
        f"/api/projects/{project['id']}", json={"name": "Bugs"}, headers=user.headers
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "Bugs"

    deleted = client.delete(f"/api/projects/{project['id']}", headers=user.headers)
    assert deleted.status_code == 204
    assert client.get(f"/api/projects/{project['id']}", headers=user.headers).status_code == 404
    assert client.get("/api/projects", headers=user.headers).json() == []


def test_projects_are_listed_newest_first_with_counts(client, user):
    for name in ("first", "second"):
        client.post("/api/projects", json={"name": name}, headers=user.headers)
    listed = client.get("/api/projects", headers=user.headers).json()
    assert [p["name"] for p in listed] == ["second", "first"]
    assert all(p["image_count"] == 0 and p["run_count"] == 0 for p in listed)


def test_bad_project_names_are_422(client, user):
    for body in ({"name": ""}, {"name": "   "}, {"name": "a\x00b"}, {"name": "x" * 201}, {}):
        response = client.post("/api/projects", json=body, headers=user.headers)
        assert response.status_code == 422, body
        assert response.json()["detail"]


def test_html_project_name_is_stored_verbatim(client, user):
    name = "<script>alert('x')</script>"
    project = client.post("/api/projects", json={"name": name}, headers=user.headers).json()
    assert client.get(f"/api/projects/{project['id']}", headers=user.headers).json()["name"] == name


def test_label_crud(client, user, project):
    url = f"/api/projects/{project['id']}/labels"
    ants = client.post(url, json={"name": "ants"}, headers=user.headers)
    assert ants.status_code == 201
    ants = ants.json()
    assert ants["name"] == "ants" and ants["color"].startswith("#") and ants["count"] == 0
    bees = client.post(url, json={"name": "bees", "color": "#112233"}, headers=user.headers).json()
    assert bees["color"] == "#112233"
    assert (
        ants["color"]
        != client.post(url, json={"name": "wasps"}, headers=user.headers).json()["color"]
    )

    assert [label["name"] for label in client.get(url, headers=user.headers).json()] == [
        "ants",
        "bees",
        "wasps",
    ]

    patched = client.patch(
        f"{url}/{ants['id']}", json={"name": "formicidae", "color": "#abcdef"}, headers=user.headers
    )
    assert patched.status_code == 200
    assert (patched.json()["name"], patched.json()["color"]) == ("formicidae", "#abcdef")

    clash = client.patch(f"{url}/{bees['id']}", json={"name": "formicidae"}, headers=user.headers)
    assert clash.status_code == 409
    duplicate = client.post(url, json={"name": "bees"}, headers=user.headers)
    assert duplicate.status_code == 409

    assert client.delete(f"{url}/{bees['id']}", headers=user.headers).status_code == 204
    assert [label["name"] for label in client.get(url, headers=user.headers).json()] == [
        "formicidae",
        "wasps",
    ]
    assert client.delete(f"{url}/{bees['id']}", headers=user.headers).status_code == 404


def test_bad_labels_are_422(client, user, project):
    url = f"/api/projects/{project['id']}/labels"
    for body in (
        {"name": ""},
        {"name": "x" * 101},
        {"name": "tab\there"},
        {"name": "ok", "color": "red"},
        {"name": "ok", "color": "#12345"},
    ):
        assert client.post(url, json=body, headers=user.headers).status_code == 422, body


def test_html_label_name_is_stored_verbatim_and_returned_as_json_text(client, user, project):
    name = '<img src=x onerror="alert(1)"> & </label>'
    url = f"/api/projects/{project['id']}/labels"
    created = client.post(url, json={"name": name}, headers=user.headers)
    assert created.status_code == 201
    assert created.headers["content-type"].startswith("application/json")
    assert created.json()["name"] == name
    assert client.get(url, headers=user.headers).json()[0]["name"] == name
    detail = client.get(f"/api/projects/{project['id']}", headers=user.headers).json()
    assert detail["labels"][0]["name"] == name


def test_project_counts_per_label_and_split(client, user, project):
    batches = [
        ("ants", "train", [1, 2, 3]),
        ("ants", "val", [4]),
        ("bees", "test", [5, 6]),
        ("bees", None, [7]),
        (None, None, [8, 9]),
    ]
    for label, split, shades in batches:
        files = {f"{s}.jpg": jpeg(s * 20) for s in shades}
        assert len(add_images(project, files, label=label, split=split).accepted) == len(shades)

    detail = client.get(f"/api/projects/{project['id']}", headers=user.headers).json()
    assert detail["image_count"] == 9 and detail["unlabeled"] == 2
    assert detail["splits"] == {"train": 3, "val": 1, "test": 2, "unassigned": 3}
    by_name = {label["name"]: label for label in detail["labels"]}
    assert by_name["ants"]["count"] == 4
    assert by_name["ants"]["splits"] == {"train": 3, "val": 1, "test": 0, "unassigned": 0}
    assert by_name["bees"]["count"] == 3
    assert by_name["bees"]["splits"] == {"train": 0, "val": 0, "test": 2, "unassigned": 1}
    listed = client.get("/api/projects", headers=user.headers).json()
    assert listed[0]["image_count"] == 9

    # Deleting a label keeps its pictures, unlabelled.
    client.delete(
        f"/api/projects/{project['id']}/labels/{by_name['bees']['id']}", headers=user.headers
    )
    detail = client.get(f"/api/projects/{project['id']}", headers=user.headers).json()
    assert detail["image_count"] == 9 and detail["unlabeled"] == 5


def test_deleting_a_project_deletes_its_images(client, user, project):
    image_id = add_images(project, {"a.jpg": jpeg(1)}).accepted[0].id
    assert client.delete(f"/api/projects/{project['id']}", headers=user.headers).status_code == 204
    assert client.get(f"/api/images/{image_id}", headers=user.headers).status_code == 404


def test_another_users_project_and_labels_are_404(client, user, make_user, project):
    label = client.post(
        f"/api/projects/{project['id']}/labels", json={"name": "ants"}, headers=user.headers
    ).json()
    intruder = make_user()
    pid, lid = project["id"], label["id"]
    for method, url, body in (
        ("GET", f"/api/projects/{pid}", None),
        ("PATCH", f"/api/projects/{pid}", {"name": "mine now"}),
        ("DELETE", f"/api/projects/{pid}", None),
        ("GET", f"/api/projects/{pid}/labels", None),
        ("POST", f"/api/projects/{pid}/labels", {"name": "x"}),
        ("PATCH", f"/api/projects/{pid}/labels/{lid}", {"name": "x"}),
        ("DELETE", f"/api/projects/{pid}/labels/{lid}", None),
    ):
        response = client.request(method, url, json=body, headers=intruder.headers)
        assert response.status_code == 404, (method, url)
    assert client.get("/api/projects", headers=intruder.headers).json() == []
    detail = client.get(f"/api/projects/{pid}", headers=user.headers).json()
    assert detail["name"] == "Insects" and [lab["name"] for lab in detail["labels"]] == ["ants"]


def test_a_label_of_another_project_is_404_here(client, user, project):
    other = client.post("/api/projects", json={"name": "Other"}, headers=user.headers).json()
    label = client.post(
        f"/api/projects/{other['id']}/labels", json={"name": "ants"}, headers=user.headers
    ).json()
    response = client.patch(
        f"/api/projects/{project['id']}/labels/{label['id']}",
        json={"name": "x"},
        headers=user.headers,
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("first", "second"),
    [("ants", "Ants"), ("café", "CAFE\u0301"), ("straße", "STRASSE")],
)
def test_labels_that_read_the_same_are_409_with_the_existing_name(
    client, user, project, first, second
):
    url = f"/api/projects/{project['id']}/labels"
    assert client.post(url, json={"name": first}, headers=user.headers).status_code == 201
    clash = client.post(url, json={"name": second}, headers=user.headers)
    assert clash.status_code == 409
    assert repr(first) in clash.json()["detail"]
    assert "upper/lower case" in clash.json()["detail"]
    other = client.post(url, json={"name": "wasps"}, headers=user.headers).json()
    renamed = client.patch(f"{url}/{other['id']}", json={"name": second}, headers=user.headers)
    assert renamed.status_code == 409


def test_label_names_are_stored_nfc_and_a_label_may_change_its_own_case(client, user, project):
    url = f"/api/projects/{project['id']}/labels"
    created = client.post(url, json={"name": "Cafe\u0301"}, headers=user.headers).json()
    assert created["name"] == "Caf\u00e9"
    same = client.post(url, json={"name": "Caf\u00e9"}, headers=user.headers)
    assert same.status_code == 409 and "already exists" in same.json()["detail"]
    renamed = client.patch(f"{url}/{created['id']}", json={"name": "CAFÉ"}, headers=user.headers)
    assert renamed.status_code == 200 and renamed.json()["name"] == "CAFÉ"


@pytest.mark.parametrize("color", ["#a1b2c3\n", "#a1b2c3\r\n", " #a1b2c3", "#a1b2c3 "])
def test_label_colour_must_be_exactly_a_hex_colour(client, user, project, color):
    url = f"/api/projects/{project['id']}/labels"
    response = client.post(url, json={"name": "ants", "color": color}, headers=user.headers)
    assert response.status_code == 422
    assert "#1a2b3c" in response.json()["detail"]
