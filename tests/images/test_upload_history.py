"""The project keeps its uploads' story: each drop (its requests share a key) is one upload of
the history, with what became of its files by label and split, after any reload."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import ApiUser, make_zip
from tests.images.conftest import distinct_pictures


def post(client: TestClient, user: ApiUser, pid: int, files: list, **form: str) -> dict:
    response = client.post(
        f"/api/projects/{pid}/images", files=files, data=form, headers=user.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_one_drop_in_two_requests_is_one_upload_by_label_and_split(
    client: TestClient, user: ApiUser, project: dict
) -> None:
    pid = project["id"]
    a, b, c, d = distinct_pictures(4)
    first = make_zip({"train/ants/a.jpg": a, "val/bees/b.jpg": b, "train/ants/notes.jpg": b"x"})
    post(client, user, pid, [("files", ("part1.zip", first, "application/zip"))], upload="drop-1")
    # The second request of the same drop: one new picture, one already there.
    second = make_zip({"train/bees/c.jpg": c, "train/ants/again.jpg": a})
    post(client, user, pid, [("files", ("part2.zip", second, "application/zip"))], upload="drop-1")
    # A script's upload with no key is an upload by itself.
    post(client, user, pid, [("files", ("d.jpg", d, "image/jpeg"))], label="ants")

    history = client.get(f"/api/projects/{pid}/uploads", headers=user.headers).json()
    assert len(history) == 2
    script, drop = history
    assert (script["accepted"], script["requests"]) == (1, 1)
    assert script["counts"] == {"ants": {"unassigned": {"accepted": 1, "duplicates": 0}}}
    assert (drop["key"], drop["requests"]) == ("drop-1", 2)
    assert (drop["accepted"], drop["duplicates"], drop["rejected"]) == (3, 1, 1)
    assert drop["counts"] == {
        "ants": {"train": {"accepted": 1, "duplicates": 1}},
        "bees": {
            "val": {"accepted": 1, "duplicates": 0},
            "train": {"accepted": 1, "duplicates": 0},
        },
    }
    assert [r["filename"] for r in drop["rejected_files"]] == ["train/ants/notes.jpg"]

    bad = client.post(
        f"/api/projects/{pid}/images",
        files=[("files", ("e.jpg", a, "image/jpeg"))],
        data={"upload": "../../etc"},
        headers=user.headers,
    )
    assert bad.status_code == 422
    assert client.get(f"/api/projects/{pid}/uploads", headers=make_other(client)).status_code == 404


def make_other(client: TestClient) -> dict[str, str]:
    from tests.factories import create_user

    return create_user().headers
