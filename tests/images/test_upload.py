"""Uploading single pictures: formats, labels and splits, deduplication, what is stored."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from tests.conftest import ApiUser
from tests.images.conftest import distinct_pictures, picture


def test_pictures_are_accepted_with_label_and_split(accept, list_images, client, user, project):
    jpeg, png = distinct_pictures(2)[0], picture("PNG", size=(64, 48))
    report = accept([("a.jpg", jpeg), ("b.png", png)], label="ants", split="train")

    assert report["duplicates"] == [] and report["rejected"] == []
    assert [(a["filename"], a["label"], a["split"]) for a in report["accepted"]] == [
        ("a.jpg", "ants", "train"),
        ("b.png", "ants", "train"),
    ]
    item = next(i for i in list_images()["items"] if i["filename"] == "b.png")
    assert {k: v for k, v in item.items() if k not in ("id", "label_id", "created_at")} == {
        "filename": "b.png",
        "label": "ants",
        "split": "train",
        "split_source": "user",
        "width": 64,
        "height": 48,
        "size_bytes": len(png),
        "format": "PNG",
        "file_url": f"/api/images/{item['id']}/file",
        "thumbnail_url": f"/api/images/{item['id']}/thumbnail",
    }
    detail = client.get(f"/api/projects/{project['id']}", headers=user.headers).json()
    assert [(label["name"], label["count"]) for label in detail["labels"]] == [("ants", 2)]
    assert detail["labels"][0]["splits"]["train"] == 2


def test_without_label_or_split_images_are_unlabeled(accept, list_images):
    report = accept([("a.jpg", picture())])
    assert report["accepted"][0]["label"] is None and report["accepted"][0]["split"] is None
    item = list_images()["items"][0]
    assert item["label"] is None and item["label_id"] is None
    assert item["split"] is None and item["split_source"] is None


@pytest.mark.parametrize("split", ["validation", "training", "TEST2", "all"])
def test_unknown_split_is_422_and_stores_nothing(upload, split, assert_nothing_stored):
    response = upload([("a.jpg", picture())], split=split)
    assert response.status_code == 422
    assert "train, val or test" in response.json()["detail"]
    assert_nothing_stored()


def test_split_is_case_insensitive(accept):
    assert accept([("a.jpg", picture())], split="Val")["accepted"][0]["split"] == "val"


def test_unusable_label_is_422(upload, assert_nothing_stored):
    response = upload([("a.jpg", picture())], label="x" * 101)
    assert response.status_code == 422
    assert "100 characters" in response.json()["detail"]
    assert_nothing_stored()


def test_html_label_is_stored_verbatim_and_returned_as_json_text(accept, client, user, project):
    name = '<img src=x onerror="alert(1)">&amp;../../etc'
    report = accept([("a.jpg", picture())], label=name)
    assert report["accepted"][0]["label"] == name
    labels = client.get(f"/api/projects/{project['id']}/labels", headers=user.headers).json()
    assert [label["name"] for label in labels] == [name]


FORMATS = [
    ("JPEG", {}, "RGB", (1, 2, 3)),
    ("JPEG", {}, "CMYK", (10, 20, 30, 40)),
    ("PNG", {}, "RGBA", (10, 200, 30, 128)),
    ("PNG", {}, "P", 7),
    ("WEBP", {}, "RGB", (9, 9, 9)),
    ("GIF", {}, "P", 3),
    ("BMP", {}, "RGB", (4, 5, 6)),
    ("TIFF", {}, "I;16", 40000),
    ("TIFF", {"compression": "tiff_lzw"}, "RGB", (7, 8, 9)),
]


def test_every_supported_format_is_accepted_with_a_jpeg_thumbnail(accept, client, user, disk):
    files = [
        (f"{i}-{mode}.{fmt.lower()}", picture(fmt, size=(300, 100), color=color, mode=mode, **save))
        for i, (fmt, save, mode, color) in enumerate(FORMATS)
    ]
    report = accept(files)
    assert report["rejected"] == [] and report["duplicates"] == []
    assert len(report["accepted"]) == len(FORMATS)
    for (fmt, *_), accepted in zip(FORMATS, report["accepted"], strict=True):
        image_id = accepted["id"]
        item = client.get(f"/api/images/{image_id}", headers=user.headers).json()
        assert (item["format"], item["width"], item["height"]) == (fmt, 300, 100), item
        thumb = client.get(f"/api/images/{image_id}/thumbnail", headers=user.headers)
        assert thumb.headers["content-type"] == "image/jpeg"
        with PILImage.open(io.BytesIO(thumb.content)) as small:
            assert small.format == "JPEG" and small.size == (256, 85)
    assert disk.blobs == {hashlib.sha256(data).hexdigest() for _, data in files}


def test_animated_gif_is_accepted_from_its_first_frame(accept, client, user):
    frames = [PILImage.new("P", (20, 10), i) for i in (1, 2, 3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    report = accept([("spin.gif", buffer.getvalue())])
    item = client.get(f"/api/images/{report['accepted'][0]['id']}", headers=user.headers).json()
    assert (item["format"], item["width"], item["height"]) == ("GIF", 20, 10)


def test_exif_orientation_sets_size_and_thumbnail_but_original_bytes_are_kept(accept, client, user):
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    data = picture("JPEG", size=(60, 30), exif=exif.tobytes())
    image_id = accept([("phone.jpg", data)])["accepted"][0]["id"]

    item = client.get(f"/api/images/{image_id}", headers=user.headers).json()
    assert (item["width"], item["height"]) == (30, 60)
    assert client.get(f"/api/images/{image_id}/file", headers=user.headers).content == data
    thumb = client.get(f"/api/images/{image_id}/thumbnail", headers=user.headers).content
    with PILImage.open(io.BytesIO(thumb)) as small:
        assert small.size == (30, 60)


def test_same_bytes_twice_in_one_request_and_again_later_are_duplicates(accept, disk):
    data = picture()
    first = accept([("a.jpg", data), ("copy of a.jpg", data)])
    assert len(first["accepted"]) == 1
    assert first["duplicates"] == [{"filename": "copy of a.jpg", "id": first["accepted"][0]["id"]}]
    blobs, thumbs = disk.blobs, disk.thumbnails

    again = accept([("renamed.jpg", data)], label="bees", split="val")
    assert again["accepted"] == []
    assert again["duplicates"] == [{"filename": "renamed.jpg", "id": first["accepted"][0]["id"]}]
    assert (disk.blobs, disk.thumbnails) == (blobs, thumbs)
    assert disk.temporary == set()


def test_duplicate_does_not_change_the_existing_label(accept, list_images):
    data = picture()
    accept([("a.jpg", data)], label="ants")
    accept([("a.jpg", data)], label="bees")
    assert [item["label"] for item in list_images()["items"]] == ["ants"]


def test_same_bytes_in_two_projects_are_two_images_sharing_one_blob(accept, client, user, disk):
    other = client.post("/api/projects", json={"name": "Other"}, headers=user.headers).json()
    data = picture()
    a = accept([("a.jpg", data)])["accepted"][0]["id"]
    b = accept([("a.jpg", data)], pid=other["id"])["accepted"][0]["id"]
    assert a != b
    assert len(disk.blobs) == 1 and len(disk.thumbnails) == 1


def test_client_supplied_folders_are_dropped_from_the_filename(accept):
    report = accept([("../../etc/passwd.jpg", picture()), ("C:\\Users\\me\\b.jpg", picture("PNG"))])
    assert [a["filename"] for a in report["accepted"]] == ["passwd.jpg", "b.jpg"]


def test_a_valid_picture_with_a_wrong_extension_is_accepted_by_content(accept):
    report = accept([("notes.txt", picture("PNG"))])
    assert report["accepted"][0]["filename"] == "notes.txt"


def test_upload_without_files_is_422(client, user, project):
    response = client.post(
        f"/api/projects/{project['id']}/images", data={"label": "x"}, headers=user.headers
    )
    assert response.status_code == 422


def test_parallel_uploads_share_a_new_label_and_dedupe_shared_files(client, user, project):
    shared, *own = distinct_pictures(9)
    responses = []

    def send(k: int) -> None:
        files = [(f"{k}-own-{i}.jpg", own[k * 2 + i]) for i in range(2)] + [("shared.jpg", shared)]
        responses.append(
            client.post(
                f"/api/projects/{project['id']}/images",
                files=[("files", f) for f in files],
                data={"label": "brand new"},
                headers=user.headers,
            )
        )

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.status_code for r in responses] == [200] * 4
    reports = [r.json() for r in responses]
    assert sum(len(r["accepted"]) for r in reports) == 9
    assert sum(len(r["duplicates"]) for r in reports) == 3
    detail = client.get(f"/api/projects/{project['id']}", headers=user.headers).json()
    assert [(label["name"], label["count"]) for label in detail["labels"]] == [("brand new", 9)]


def test_relative_paths_in_file_names_name_label_and_split(
    client: TestClient, user: ApiUser, project: dict, hymenoptera: Path
) -> None:
    """A dropped folder (or `autodl upload DIR`) sends train/ants/x.jpg as the file name."""
    ant = sorted((hymenoptera / "val" / "ants").iterdir())[0]
    bee = sorted((hymenoptera / "train" / "bees").iterdir())[0]
    response = client.post(
        f"/api/projects/{project['id']}/images",
        files=[
            ("files", (f"val/ants/{ant.name}", ant.read_bytes(), "image/jpeg")),
            ("files", (f"bees/{bee.name}", bee.read_bytes(), "image/jpeg")),
        ],
        data={"label": "fallback"},
        headers=user.headers,
    )
    accepted = {a["filename"]: (a["label"], a["split"]) for a in response.json()["accepted"]}
    assert accepted == {ant.name: ("ants", "val"), bee.name: ("bees", None)}


def test_an_upload_label_that_clashes_by_case_is_409_and_stores_nothing(
    accept, upload, list_images, disk
):
    accept([("a.jpg", picture(color=(1, 2, 3)))], label="ants")
    response = upload([("b.jpg", picture(color=(4, 5, 6)))], label="Ants")
    assert response.status_code == 409
    assert "'ants'" in response.json()["detail"]
    assert list_images()["total"] == 1
    assert len(disk.blobs) == 1


def test_zip_folders_that_clash_by_case_are_rejected_and_nfd_names_join_nfc_labels(accept):
    from tests.conftest import make_zip

    accept([("a.jpg", picture(color=(1, 2, 3)))], label="Caf\u00e9")
    archive = make_zip(
        {
            "Cafe\u0301/b.jpg": picture(color=(4, 5, 6)),  # NFD, as macOS writes folder names
            "CAFÉ/c.jpg": picture(color=(7, 8, 9)),
        }
    )
    report = accept([("photos.zip", archive)])
    assert [(a["filename"], a["label"]) for a in report["accepted"]] == [("b.jpg", "Caf\u00e9")]
    (rejected,) = report["rejected"]
    assert rejected["filename"] == "CAFÉ/c.jpg"
    assert "would be confused with the existing label 'Café'" in rejected["reason"]


def test_big_rotated_jpeg_keeps_its_full_size_though_decoded_in_draft(accept, client, user):
    """Draft decoding (DCT-scaled) makes the thumbnail; width and height stay the file's."""
    exif = PILImage.Exif()
    exif[0x0112] = 8  # rotate 90° counter-clockwise when shown
    noise = PILImage.effect_noise((1200, 2000), 60).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, "JPEG", quality=80, exif=exif.tobytes())
    image_id = accept([("big.jpg", buffer.getvalue())])["accepted"][0]["id"]
    item = client.get(f"/api/images/{image_id}", headers=user.headers).json()
    assert (item["width"], item["height"]) == (2000, 1200)
    thumb = client.get(f"/api/images/{image_id}/thumbnail", headers=user.headers).content
    with PILImage.open(io.BytesIO(thumb)) as small:
        assert small.size == (256, 154)


def test_verdicts_follow_upload_order_when_decoded_in_parallel(upload):
    """Pictures decode in a pool; accepted, duplicate and rejected keep the upload order."""
    pictures = distinct_pictures(12)
    files = []
    for i, data in enumerate(pictures):
        files.append((f"{i:02d}.jpg", data))
        if i % 4 == 1:
            files.append((f"{i:02d}-copy.jpg", data))
        if i % 4 == 2:
            files.append((f"{i:02d}-cut.jpg", data[: len(data) // 2]))
    report = upload(files).json()
    assert [a["filename"] for a in report["accepted"]] == [f"{i:02d}.jpg" for i in range(12)]
    assert [d["filename"] for d in report["duplicates"]] == [
        "01-copy.jpg",
        "05-copy.jpg",
        "09-copy.jpg",
    ]
    assert [r["filename"] for r in report["rejected"]] == ["02-cut.jpg", "06-cut.jpg", "10-cut.jpg"]
