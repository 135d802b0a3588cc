"""Hostile or broken single files: each is rejected with a reason and leaves nothing behind."""

from __future__ import annotations

import io
import os

import pytest
from fastapi import UploadFile
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from PIL import ImageFile

from backend.images import ingest
from backend.images.decode import NOT_A_PICTURE
from backend.storage import FileTooLarge, ImageStore
from tests.conftest import make_zip, reset_caches
from tests.images.conftest import picture, png_header


def only_reason(response) -> str:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == [] and body["duplicates"] == []
    assert len(body["rejected"]) == 1
    return body["rejected"][0]["reason"]


NON_PICTURES = [
    ("words.jpg", b"Just some words, not a picture at all."),
    ("page.png", b"<!doctype html><html><script>alert(1)</script></html>"),
    ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
    ("drawing.jpg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'),
    ("doc.webp", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj"),
    ("noise.gif", bytes(range(256)) * 8),
]


def rejected(response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == [] and body["duplicates"] == []
    return {r["filename"]: r["reason"] for r in body["rejected"]}


def test_non_pictures_with_picture_names_are_rejected(upload, assert_nothing_stored):
    why = rejected(upload(NON_PICTURES))
    assert set(why) == {name for name, _ in NON_PICTURES}
    for name, reason in why.items():
        assert reason == NOT_A_PICTURE, name
    assert_nothing_stored()


def test_truncated_pictures_are_rejected(upload, assert_nothing_stored):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    noise = PILImage.effect_noise((300, 300), 80).convert("RGB")
    files = []
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"):
        flat = picture(fmt, size=(300, 300), color=(10, 200, 90))
        buffer = io.BytesIO()
        noise.save(buffer, fmt)
        for kind, data in (("flat", flat), ("noise", buffer.getvalue())):
            files.append((f"{kind}.{fmt.lower()}", data[: len(data) * 2 // 3]))
    why = rejected(upload(files))
    assert set(why) == {name for name, _ in files}
    for name, reason in why.items():
        assert "damaged or incomplete" in reason, name
    assert_nothing_stored()


def test_a_zero_byte_file_is_rejected(upload, assert_nothing_stored):
    assert only_reason(upload([("empty.jpg", b"")])) == "This file is empty (0 bytes)."
    assert_nothing_stored()


def test_a_file_over_the_per_picture_cap_is_rejected(
    upload, settings, monkeypatch, assert_nothing_stored
):
    data = picture(size=(300, 300))
    monkeypatch.setattr(settings, "max_image_bytes", len(data) - 1)
    assert "larger than" in only_reason(upload([("big.jpg", data)]))
    assert_nothing_stored()


def test_a_picture_over_the_pixel_cap_is_rejected_before_decoding(
    upload, settings, monkeypatch, assert_nothing_stored
):
    monkeypatch.setattr(settings, "max_image_pixels", 100 * 100)
    reason = only_reason(upload([("wide.png", picture("PNG", size=(101, 100)))]))
    assert reason.startswith("This picture is too large: 101 x 100 pixels")
    # A header that claims 9000 x 8000 with no pixel data behind it: refused, not decoded.
    monkeypatch.setattr(settings, "max_image_pixels", 64_000_000)
    reason = only_reason(upload([("bomb.png", png_header(9000, 8000))]))
    assert reason.startswith("This picture is too large: 9000 x 8000 pixels")
    assert_nothing_stored()


@pytest.mark.parametrize("side", [10_000, 20_000])
def test_pillow_decompression_bomb_warning_and_error_count_as_errors(
    upload, settings, monkeypatch, side, assert_nothing_stored
):
    # Our own cap raised above Pillow's, so Pillow's guard is what fires (warning at
    # 100 MP, error at 400 MP).
    monkeypatch.setattr(settings, "max_image_pixels", 10**9)
    reason = only_reason(upload([("bomb.png", png_header(side, side))]))
    assert "too many pixels" in reason
    assert_nothing_stored()


def test_an_unexpected_failure_rejects_only_that_file(upload, monkeypatch, list_images, caplog):
    real = ingest.read_picture
    bad = picture(color=(1, 1, 1))

    def flaky(path, max_pixels, budget=None):
        if path.read_bytes() == bad:
            raise RuntimeError("boom")
        return real(path, max_pixels, budget)

    monkeypatch.setattr(ingest, "read_picture", flaky)
    response = upload([("bad.jpg", bad), ("good.jpg", picture(color=(2, 2, 2)))])
    assert response.status_code == 200
    body = response.json()
    assert [a["filename"] for a in body["accepted"]] == ["good.jpg"]
    assert body["rejected"][0]["filename"] == "bad.jpg"
    assert "could not be read" in body["rejected"][0]["reason"]
    assert "boom" in caplog.text
    assert [i["filename"] for i in list_images()["items"]] == ["good.jpg"]


def test_one_bad_file_never_rejects_the_good_ones(upload, list_images):
    body = upload(
        [
            ("1.jpg", picture(color=(1, 2, 3))),
            ("bad.jpg", b"nope"),
            ("empty.png", b""),
            ("2.png", picture("PNG", color=(3, 2, 1))),
        ]
    ).json()
    assert [a["filename"] for a in body["accepted"]] == ["1.jpg", "2.png"]
    assert [r["filename"] for r in body["rejected"]] == ["bad.jpg", "empty.png"]
    assert list_images()["total"] == 2


def test_staging_stops_reading_past_the_cap(settings_env):
    from backend.config import get_settings

    class Endless(io.RawIOBase):
        read_bytes = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            size = 1 << 20 if size is None or size < 0 else size
            self.read_bytes += size
            return b"\xff" * size

    source = Endless()
    store = ImageStore(get_settings())
    with pytest.raises(FileTooLarge), store.stage(source, max_bytes=5000):
        pass
    assert source.read_bytes == 5001
    assert list(get_settings().tmp_dir.iterdir()) == []


def test_a_request_over_the_size_limit_is_413(settings_env, monkeypatch):
    monkeypatch.setenv("AUTODL_MAX_REQUEST_BYTES", "20000")
    reset_caches()
    from backend.app import create_app

    with TestClient(create_app()) as client:
        token = client.post(
            "/api/auth/signup", json={"email": "big@example.com", "password": "long enough pw"}
        ).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        pid = client.post("/api/projects", json={"name": "p"}, headers=headers).json()["id"]
        url = f"/api/projects/{pid}/images"
        big = [("files", ("big.bmp", picture("BMP", size=(100, 100)), "image/bmp"))]

        response = client.post(url, files=big, headers=headers)
        assert response.status_code == 413
        assert "too large" in response.json()["detail"]

        # Streamed without a Content-Length, the limit still holds.
        boundary = "b0undary"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.bmp"\r\n'
            f"Content-Type: image/bmp\r\n\r\n".encode()
            + picture("BMP", size=(100, 100))
            + f"\r\n--{boundary}--\r\n".encode()
        )
        response = client.post(
            url,
            content=(body[i : i + 4096] for i in range(0, len(body), 4096)),
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status_code == 413
        assert "too large" in response.json()["detail"]

        listing = client.get(url, headers=headers).json()
        assert listing["total"] == 0
        small = [("files", ("small.jpg", picture(), "image/jpeg"))]
        assert len(client.post(url, files=small, headers=headers).json()["accepted"]) == 1
    assert len([p for p in (settings_env / "images").rglob("*") if p.is_file()]) == 1


def test_an_unexpected_failure_inside_a_zip_rejects_the_zip_not_the_request(
    upload, monkeypatch, list_images
):
    def broken(paths):
        raise RuntimeError("boom")

    monkeypatch.setattr(ingest, "_common_root", broken)
    response = upload(
        [("z.zip", make_zip({"ants/a.jpg": picture()})), ("b.jpg", picture(color=(9, 9, 9)))]
    )
    assert response.status_code == 200
    assert [r["filename"] for r in response.json()["rejected"]] == ["z.zip"]
    assert [i["filename"] for i in list_images()["items"]] == ["b.jpg"]


def test_hidden_files_uploaded_directly_are_skipped(upload, assert_nothing_stored):
    why = rejected(upload([(".DS_Store", b"\x00\x00\x00\x01Bud1"), ("._a.jpg", picture())]))
    assert set(why) == {".DS_Store", "._a.jpg"}
    assert all(reason.startswith("Skipped:") for reason in why.values())
    assert_nothing_stored()


def test_uploads_spool_into_the_data_dir_not_the_system_tmp(client, settings_env):
    @client.app.post("/spool-probe")
    def probe(file: UploadFile) -> dict[str, str]:
        spooled = file.file._file  # type: ignore[attr-defined]  # rolled over to disk past 1 MB
        return {"folder": os.path.dirname(os.readlink(f"/proc/self/fd/{spooled.fileno()}"))}

    response = client.post("/spool-probe", files={"file": ("big.bin", b"\0" * 3 * 1024**2)})
    assert response.status_code == 200, response.text
    assert response.json()["folder"] == str((settings_env / "tmp").resolve())


def test_a_full_storage_quota_is_507_and_a_file_past_it_is_refused(
    client, user, make_user, project, settings, monkeypatch, upload, list_images
):
    small, large = picture(size=(20, 20), color=(1, 2, 3)), picture(size=(300, 300))
    first = upload([("small.png", small)])
    assert len(first.json()["accepted"]) == 1
    monkeypatch.setattr(settings, "quota_bytes", len(small) + len(large) // 2)
    over = upload([("large.jpg", large)]).json()
    assert over["accepted"] == []
    assert "storage quota" in over["rejected"][0]["reason"]

    monkeypatch.setattr(settings, "quota_bytes", len(small))
    full = upload([("other.png", picture(size=(20, 20), color=(9, 9, 9)))])
    assert full.status_code == 507
    assert "quota is full" in full.json()["detail"]
    assert list_images()["total"] == 1

    someone = make_user()  # the quota is per user
    theirs = client.post("/api/projects", json={"name": "P"}, headers=someone.headers).json()
    assert upload([("x.png", small)], pid=theirs["id"], headers=someone.headers).status_code == 200


def test_the_files_of_one_request_fill_the_quota_as_they_are_stored(upload, settings, monkeypatch):
    pictures = [picture("PNG", size=(20, 20), color=(80 * i, 0, 0)) for i in range(3)]
    monkeypatch.setattr(settings, "quota_bytes", len(pictures[0]) + len(pictures[1]))
    report = upload([(f"{i}.png", p) for i, p in enumerate(pictures)]).json()
    assert [a["filename"] for a in report["accepted"]] == ["0.png", "1.png"]
    (rejected,) = report["rejected"]
    assert rejected["filename"] == "2.png" and "storage quota" in rejected["reason"]


def test_one_request_decodes_at_most_its_pixel_budget(upload, settings, monkeypatch):
    monkeypatch.setattr(settings, "max_request_pixels", 2 * 40 * 30)
    report = upload([(f"{i}.png", picture(color=(i, i, i))) for i in range(3)]).json()
    assert len(report["accepted"]) == 2
    (rejected,) = report["rejected"]
    assert "megapixels in total" in rejected["reason"]
    assert len(upload([("3.png", picture(color=(3, 3, 3)))]).json()["accepted"]) == 1
