"""Zips: folders that name labels and splits, hostile archives, the real dataset."""

from __future__ import annotations

import io
import time
import zipfile
from collections import Counter

import pytest

from tests.conftest import hymenoptera_zip, make_zip
from tests.images.conftest import distinct_pictures, picture
from tests.zips import bad_crc, deflate64, encrypted, overlapping


def placed(report: dict) -> dict[str, tuple[str | None, str | None]]:
    return {a["filename"]: (a["label"], a["split"]) for a in report["accepted"]}


def reasons(report: dict) -> dict[str, str]:
    return {r["filename"]: r["reason"] for r in report["rejected"]}


def test_folders_name_labels_and_splits(accept):
    p = distinct_pictures(6)
    archive = make_zip(
        {
            "ants/a.jpg": p[0],
            "train/bees/b.jpg": p[1],
            "val/ants/c.jpg": p[2],
            "test/bees/d.jpg": p[3],
            "e.jpg": p[4],
            "train/f.jpg": p[5],
        }
    )
    report = accept([("data.zip", archive)])
    assert report["rejected"] == [] and report["duplicates"] == []
    assert placed(report) == {
        "a.jpg": ("ants", None),
        "b.jpg": ("bees", "train"),
        "c.jpg": ("ants", "val"),
        "d.jpg": ("bees", "test"),
        "e.jpg": (None, None),
        "f.jpg": (None, "train"),
    }


def test_one_common_root_folder_is_tolerated(accept):
    p = distinct_pictures(3)
    archive = make_zip(
        {
            "hymenoptera/train/ants/a.jpg": p[0],
            "hymenoptera/val/bees/b.jpg": p[1],
            "hymenoptera/train/c.jpg": p[2],
        }
    )
    assert placed(accept([("h.zip", archive)])) == {
        "a.jpg": ("ants", "train"),
        "b.jpg": ("bees", "val"),
        "c.jpg": (None, "train"),
    }


def test_a_zip_of_one_folder_labels_its_pictures(accept):
    p = distinct_pictures(2)
    archive = make_zip({"cats/a.jpg": p[0], "cats/b.jpg": p[1]})
    assert set(placed(accept([("cats.zip", archive)])).values()) == {("cats", None)}


def test_folder_label_wins_over_form_label_and_form_fills_the_gaps(accept):
    p = distinct_pictures(3)
    archive = make_zip({"train/ants/a.jpg": p[0], "b.jpg": p[1]})
    report = accept([("z.zip", archive), ("c.jpg", p[2])], label="bees", split="test")
    assert placed(report) == {
        "a.jpg": ("ants", "train"),
        "b.jpg": ("bees", "test"),
        "c.jpg": ("bees", "test"),
    }


def test_html_and_path_characters_in_folder_names_become_labels_verbatim(accept, disk):
    archive = make_zip(
        {
            "<img src=x onerror=alert(1)> & co/a.jpg": picture(),
            "ants%2f..%2fetc/b.jpg": picture("PNG"),
        }
    )
    report = accept([("z.zip", archive)])
    assert placed(report) == {
        "a.jpg": ("<img src=x onerror=alert(1)> & co", None),
        "b.jpg": ("ants%2f..%2fetc", None),
    }
    assert all(len(name) == 64 for name in disk.blobs)  # never named after a label


def test_decomposed_unicode_folder_names_join_the_composed_label(accept):
    p = distinct_pictures(2)
    archive = make_zip({"cafe\u0301/a.jpg": p[0]})
    report = accept([("z.zip", archive), ("b.jpg", p[1])], label="caf\u00e9")
    assert {a["label"] for a in report["accepted"]} == {"caf\u00e9"}


def test_hidden_and_macos_entries_are_skipped_with_a_reason(accept):
    archive = make_zip(
        {
            "ants/a.jpg": picture(),
            "__MACOSX/ants/._a.jpg": b"\x00\x05\x16\x07",
            ".DS_Store": b"\x00\x00\x00\x01Bud1",
            "ants/.hidden.jpg": picture("PNG"),
            "Thumbs.db": b"junk",
        }
    )
    report = accept([("mac.zip", archive)])
    assert placed(report) == {"a.jpg": ("ants", None)}
    assert set(reasons(report)) == {
        "__MACOSX/ants/._a.jpg",
        ".DS_Store",
        "ants/.hidden.jpg",
        "Thumbs.db",
    }
    assert all(reason.startswith("Skipped:") for reason in reasons(report).values())


UNSAFE_NAMES = (
    "../evil.jpg",
    "ants/../../evil.jpg",
    "/etc/evil.jpg",
    "C:\\evil.jpg",
    "C:/evil.jpg",
    "ants\\evil.jpg",
)


def test_zip_slip_names_are_rejected_and_nothing_is_written(
    upload, assert_nothing_stored, tmp_path
):
    archive = make_zip({name: picture(color=(i, 0, 0)) for i, name in enumerate(UNSAFE_NAMES)})
    response = upload([("slip.zip", archive)])
    assert response.status_code == 200
    assert response.json()["accepted"] == []
    why = reasons(response.json())
    assert set(why) == set(UNSAFE_NAMES)
    assert all("outside the zip" in reason for reason in why.values())
    assert_nothing_stored()
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path.parent / "evil.jpg").exists()


def test_archives_inside_a_zip_are_not_unpacked(upload, assert_nothing_stored):
    nested = make_zip({"a.jpg": picture()})
    inner = ["more.zip", "more.tar", "more.tar.gz", "more.7z", "more.rar", "x.gz"]
    response = upload([("outer.zip", make_zip(dict.fromkeys(inner, nested)))])
    assert response.status_code == 200
    why = reasons(response.json())
    assert set(why) == set(inner)
    assert all("archives are not unpacked inside a zip" in reason for reason in why.values())
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("hostile", "reason"),
    [(encrypted, "password-protected"), (deflate64, "compression method"), (bad_crc, "damaged")],
)
def test_entries_that_cannot_be_unpacked_are_rejected(
    upload, assert_nothing_stored, hostile, reason
):
    response = upload([("z.zip", hostile(make_zip({"a.jpg": picture()})))])
    assert response.status_code == 200
    assert reason in reasons(response.json())["a.jpg"]
    assert_nothing_stored()


def test_entries_sharing_their_bytes_are_unpacked_once(upload, list_images, disk):
    bomb = overlapping(picture(), copies=100)
    report = upload([("bomb.zip", bomb)]).json()
    assert [a["filename"] for a in report["accepted"]] == ["x.jpg"]
    assert len(report["rejected"]) == 99
    assert all("shares its compressed bytes" in r["reason"] for r in report["rejected"])
    assert list_images()["total"] == 1 and disk.temporary == set()


def test_a_corrupt_zip_is_rejected_and_the_rest_of_the_request_is_kept(upload, list_images, disk):
    good = picture()
    truncated = make_zip({"a.jpg": picture("PNG")})[:40]
    response = upload(
        [("broken.zip", b"PK\x03\x04 not really"), ("cut.zip", truncated), ("ok.jpg", good)]
    )
    assert response.status_code == 200
    assert set(reasons(response.json())) == {"broken.zip", "cut.zip"}
    assert all("damaged" in r for r in reasons(response.json()).values())
    assert [item["filename"] for item in list_images()["items"]] == ["ok.jpg"]
    assert len(disk.blobs) == 1


def test_a_damaged_entry_is_rejected_and_its_neighbours_kept(upload, list_images):
    p = distinct_pictures(2)
    data = bytearray(make_zip({"a.jpg": p[0], "b.jpg": p[1]}))
    first = data.find(b"a.jpg") + len("a.jpg") + 10
    data[first : first + 200] = bytes(200)  # zero part of a.jpg's compressed bytes
    response = upload([("z.zip", bytes(data))])
    assert response.status_code == 200
    assert "damaged" in reasons(response.json())["a.jpg"]
    assert [item["filename"] for item in list_images()["items"]] == ["b.jpg"]


def test_too_many_entries_rejects_the_zip(upload, settings, monkeypatch, assert_nothing_stored):
    monkeypatch.setattr(settings, "max_zip_entries", 3)
    archive = make_zip({f"{i}.jpg": p for i, p in enumerate(distinct_pictures(4))})
    response = upload([("many.zip", archive)])
    assert "holds 4 files; the limit is 3" in reasons(response.json())["many.zip"]
    assert_nothing_stored()


def test_unpacking_stops_at_the_total_byte_budget(upload, settings, monkeypatch, list_images):
    p = distinct_pictures(4)
    monkeypatch.setattr(settings, "max_zip_total_bytes", len(p[0]) + len(p[1]) + 10)
    archive = make_zip({f"{i}.jpg": data for i, data in enumerate(p)})
    report = upload([("big.zip", archive)]).json()
    assert [a["filename"] for a in report["accepted"]] == ["0.jpg", "1.jpg"]
    assert set(reasons(report)) == {"2.jpg", "3.jpg"}
    assert all("more than" in r for r in reasons(report).values())
    assert list_images()["total"] == 2


def test_an_entry_compressed_far_too_well_is_not_unpacked(upload, assert_nothing_stored):
    flat = picture("BMP", size=(600, 600), color=(0, 0, 0))  # ~1 MB that deflates ~1000x
    response = upload([("bomb.zip", make_zip({"flat.bmp": flat}))])
    assert "zip bombs" in reasons(response.json())["flat.bmp"]
    assert_nothing_stored()


def test_an_entry_over_the_per_file_cap_is_not_unpacked(
    upload, settings, monkeypatch, assert_nothing_stored
):
    data = picture(size=(200, 200))
    monkeypatch.setattr(settings, "max_image_bytes", len(data) - 1)
    response = upload([("z.zip", make_zip({"a.jpg": data}))])
    assert "larger than" in reasons(response.json())["a.jpg"]
    assert_nothing_stored()


def test_an_entry_lying_about_its_size_is_not_stored(upload, assert_nothing_stored):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.jpg", picture(size=(100, 100)))
    data = bytearray(buffer.getvalue())
    for signature, size_offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        data[at + size_offset : at + size_offset + 4] = (100).to_bytes(4, "little")
    response = upload([("liar.zip", bytes(data))])
    assert response.status_code == 200
    assert "damaged" in reasons(response.json())["a.jpg"]
    assert_nothing_stored()


def test_bad_files_inside_a_zip_get_their_own_reasons(upload, list_images):
    archive = make_zip(
        {
            "ants/good.jpg": picture(),
            "ants/empty.jpg": b"",
            "ants/text.jpg": b"just some words",
            "ants/cut.png": picture("PNG", size=(200, 200))[:300],
            "ants/drawing.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        }
    )
    report = upload([("mixed.zip", archive)]).json()
    assert placed(report) == {"good.jpg": ("ants", None)}
    why = reasons(report)
    assert "empty" in why["ants/empty.jpg"]
    assert "not a picture" in why["ants/text.jpg"]
    assert "damaged or incomplete" in why["ants/cut.png"]
    assert "not a picture" in why["ants/drawing.svg"]
    assert list_images()["total"] == 1


@pytest.mark.slow
def test_hymenoptera_train_and_val_as_one_zip(
    upload, hymenoptera, list_images, disk, client, user, project
):
    archive = hymenoptera_zip(hymenoptera)

    started = time.perf_counter()
    first = upload([("hymenoptera.zip", archive)])
    seconds = time.perf_counter() - started
    assert first.status_code == 200, first.text
    report = first.json()
    assert (len(report["accepted"]), len(report["duplicates"]), report["rejected"]) == (398, 0, [])
    counts = Counter((a["label"], a["split"]) for a in report["accepted"])
    assert counts == {
        ("ants", "train"): 124,
        ("bees", "train"): 121,
        ("ants", "val"): 70,
        ("bees", "val"): 83,
    }
    gif = next(i for i in list_images(limit=500)["items"] if i["filename"] == "imageNotFound.gif")
    assert (gif["format"], gif["label"], gif["split"]) == ("GIF", "ants", "train")
    detail = client.get(f"/api/projects/{project['id']}", headers=user.headers).json()
    assert detail["image_count"] == 398 and detail["splits"]["val"] == 153
    print(f"\nhymenoptera: 398 accepted in {seconds:.1f} s")

    blobs, thumbs = disk.blobs, disk.thumbnails
    assert len(blobs) == len(thumbs) == 398
    started = time.perf_counter()
    again = upload([("hymenoptera.zip", archive)]).json()
    seconds = time.perf_counter() - started
    print(f"hymenoptera again: {len(again['duplicates'])} duplicates in {seconds:.1f} s")
    assert (len(again["accepted"]), len(again["duplicates"]), again["rejected"]) == (0, 398, [])
    assert {d["id"] for d in again["duplicates"]} == {a["id"] for a in report["accepted"]}
    assert (disk.blobs, disk.thumbnails, disk.temporary) == (blobs, thumbs, set())
    assert list_images()["total"] == 398
