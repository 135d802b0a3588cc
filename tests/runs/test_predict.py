"""POST /api/runs/{rid}/predict with hostile zips: reasons per file, never a 500, and a disk
that holds one unpacked picture at a time (the zip reader is the upload's, limits and all)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from backend.archives import ENCRYPTED, OVERLAPPING, UNSAFE_PATH, UNSUPPORTED_METHOD
from backend.config import get_settings
from tests.conftest import ApiUser, make_zip
from tests.factories import tiny_run
from tests.runs.conftest import execute, start_run
from tests.zips import bad_crc, deflate64, encrypted, overlapping, ratio, sparse_bytes

pytestmark = pytest.mark.slow

MiB = 1024**2


@pytest.fixture
def run_id(
    client: TestClient, user: ApiUser, small_project: dict, monkeypatch: pytest.MonkeyPatch
) -> int:
    run = start_run(client, user, small_project, **tiny_run())
    assert execute(run["id"]) == "succeeded"
    monkeypatch.setattr(get_settings(), "max_image_bytes", MiB)  # small pictures, quick tests
    return int(run["id"])


@dataclass
class DiskUse:
    peak_tmp_bytes: int = 0
    written_bytes: int = 0


@contextmanager
def disk_use(tmp_dir: Path) -> Iterator[DiskUse]:
    """The most the data dir's tmp held at once (sampled every millisecond) and the bytes
    this process wrote meanwhile."""
    use, done = DiskUse(), threading.Event()

    def sample() -> None:
        while not done.wait(0.001):
            held = sum(entry.stat().st_size for entry in _files(tmp_dir))
            use.peak_tmp_bytes = max(use.peak_tmp_bytes, held)

    process = psutil.Process()
    written = process.io_counters().write_chars
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield use
    finally:
        done.set()
        sampler.join()
        use.written_bytes = process.io_counters().write_chars - written


def _files(folder: Path) -> Iterator[os.DirEntry[str]]:
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _files(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                yield entry
        except FileNotFoundError:  # removed while we looked
            continue


def predict_zip(client: TestClient, user: ApiUser, run_id: int, data: bytes) -> httpx.Response:
    return client.post(
        f"/api/runs/{run_id}/predict",
        files=[("file", ("batch.zip", data, "application/zip"))],
        headers=user.headers,
    )


def test_a_zip_of_overlapping_entries_unpacks_one_of_them(
    client: TestClient, user: ApiUser, run_id: int, settings_env: Path
) -> None:
    # 256 entries that all point at one compressed megabyte: 27 KB that unpack to 256 MB.
    bomb = overlapping(sparse_bytes(MiB), copies=256)
    assert len(bomb) < 30_000 and ratio(bomb) < 100
    with disk_use(settings_env / "tmp") as use:
        response = predict_zip(client, user, run_id, bomb)
    print(
        f"\noverlapping zip of {len(bomb)} bytes: {use.written_bytes} bytes written, "
        f"at most {use.peak_tmp_bytes} bytes in tmp at once"
    )
    assert use.written_bytes < 4 * MiB
    assert use.peak_tmp_bytes <= MiB + len(bomb)  # one entry (and the upload, if spooled here)
    assert response.status_code == 200, response.text
    reasons = [item["reason"] for item in response.json()["rejected"]]
    assert len(reasons) == 256 and reasons[1:] == [OVERLAPPING] * 255
    assert "not a picture" in reasons[0]


def test_every_entry_gets_an_answer_and_the_disk_holds_one_at_a_time(
    client: TestClient, user: ApiUser, run_id: int, settings_env: Path, hymenoptera: Path
) -> None:
    pictures = sorted((hymenoptera / "val" / "ants").iterdir())[:2]
    entries = {f"junk/{i}.jpg": sparse_bytes(MiB, seed=i) for i in range(12)}
    entries |= {p.name: p.read_bytes() for p in pictures}
    data = make_zip(entries)
    with disk_use(settings_env / "tmp") as use:
        response = predict_zip(client, user, run_id, data)
    print(f"\n12 MB of entries: at most {use.peak_tmp_bytes} bytes in tmp at once")
    assert use.peak_tmp_bytes <= MiB + len(data)  # one entry (and the upload, if spooled here)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["filename"] for r in body["results"]] == [p.name for p in pictures]
    assert len(body["rejected"]) == 12

    # Zips that zipfile cannot unpack answered 500 before: now a reason per entry.
    picture = pictures[0].read_bytes()
    expected = {encrypted: ENCRYPTED, deflate64: UNSUPPORTED_METHOD, bad_crc: "damaged"}
    for hostile, reason in expected.items():
        response = predict_zip(client, user, run_id, hostile(make_zip({"a.jpg": picture})))
        assert response.status_code == 200, (hostile.__name__, response.text)
        assert response.json()["results"] == []
        (rejected,) = response.json()["rejected"]
        assert rejected["filename"] == "a.jpg" and reason in rejected["reason"]

    many = {"../evil.jpg": picture, "flat.bmp": bytes(MiB), "big.jpg": sparse_bytes(MiB + 1)}
    response = predict_zip(client, user, run_id, make_zip(many))
    assert response.status_code == 200, response.text
    why = {r["filename"]: r["reason"] for r in response.json()["rejected"]}
    assert why["../evil.jpg"] == UNSAFE_PATH
    assert "zip bombs" in why["flat.bmp"] and "larger than" in why["big.jpg"]

    damaged = predict_zip(client, user, run_id, b"PK\x03\x04 not a zip at all")
    assert damaged.status_code == 422 and "damaged" in damaged.json()["detail"]


def test_the_zips_of_one_prediction_request_share_one_byte_budget(
    client: TestClient, user: ApiUser, run_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "max_zip_total_bytes", int(2.5 * MiB))
    first = make_zip({f"{i}.jpg": sparse_bytes(MiB, seed=i) for i in range(2)})
    second = make_zip({f"{i}.jpg": sparse_bytes(MiB, seed=i) for i in range(2, 4)})
    files = [("file", (f"{n}.zip", z, "application/zip")) for n, z in (("a", first), ("b", second))]
    response = client.post(f"/api/runs/{run_id}/predict", files=files, headers=user.headers)
    assert response.status_code == 200, response.text
    why = {r["filename"]: r["reason"] for r in response.json()["rejected"]}
    assert "not a picture" in why["0.jpg"] and "not a picture" in why["1.jpg"]
    for late in ("2.jpg", "3.jpg"):  # stopped while unpacking, then before opening
        assert "unpack to more than" in why[late], why


def test_one_prediction_request_decodes_at_most_its_pixel_budget(
    client: TestClient,
    user: ApiUser,
    run_id: int,
    hymenoptera: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``AUTODL_MAX_REQUEST_PIXELS`` bounds a prediction request as it bounds an upload: the
    pictures past the budget are refused with a reason, the others classified."""
    pictures = sorted((hymenoptera / "val" / "bees").iterdir())[:3]
    sizes = [Image.open(p).size for p in pictures]
    budget = sum(width * height for width, height in sizes[:2])
    monkeypatch.setattr(get_settings(), "max_request_pixels", budget)
    files = [("file", (p.name, p.read_bytes(), "image/jpeg")) for p in pictures]
    response = client.post(f"/api/runs/{run_id}/predict", files=files, headers=user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["filename"] for r in body["results"]] == [p.name for p in pictures[:2]]
    (rejected,) = body["rejected"]
    assert rejected["filename"] == pictures[2].name
    assert "megapixels in total" in rejected["reason"]
