"""The one zip reader of uploads and predictions: every hostile entry refused with a reason."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from backend.archives import (
    ENCRYPTED,
    OVERLAPPING,
    UNSAFE_PATH,
    UNSUPPORTED_METHOD,
    ZIP_DAMAGED,
    ZIP_ENTRY_DAMAGED,
    Refused,
    RefusedEntry,
    ZipReader,
)
from backend.config import Settings
from tests.conftest import make_zip
from tests.zips import bad_crc, deflate64, encrypted, overlapping, quoted, ratio, sparse_bytes

MiB = 1024**2


def reader(tmp_path: Path, **limits: int) -> ZipReader:
    return ZipReader(Settings(data_dir=tmp_path, **limits))


def verdicts(zips: ZipReader, data: bytes) -> list[tuple[str, int | str]]:
    """Each entry in order with how many bytes it unpacked to, or why it was refused."""
    found: list[tuple[str, int | str]] = []
    with zips.entries(io.BytesIO(data)) as entries:
        for entry in entries:
            if isinstance(entry, RefusedEntry):
                found.append((entry.name, entry.reason))
                continue
            try:
                with entry.open() as stream:
                    size = sum(len(chunk) for chunk in iter(lambda: stream.read(MiB), b""))
                found.append((entry.name, size))
            except Refused as exc:
                found.append((entry.name, exc.reason))
    return found


def walk(zips: ZipReader, data: bytes) -> dict[str, int | str]:
    return dict(verdicts(zips, data))


def test_honest_entries_unpack_whole(tmp_path: Path) -> None:
    data = make_zip({"ants/a.jpg": sparse_bytes(5000), "b.jpg": b"x" * 10, "empty.jpg": b""})
    assert walk(reader(tmp_path), data) == {"ants/a.jpg": 5000, "b.jpg": 10, "empty.jpg": 0}


@pytest.mark.parametrize(
    ("hostile", "reason"),
    [(encrypted, ENCRYPTED), (deflate64, UNSUPPORTED_METHOD), (bad_crc, ZIP_ENTRY_DAMAGED)],
)
def test_entries_zipfile_cannot_unpack_get_a_reason(tmp_path: Path, hostile, reason) -> None:
    data = hostile(make_zip({"a.jpg": sparse_bytes(5000), "b.jpg": sparse_bytes(300, seed=1)}))
    assert walk(reader(tmp_path), data) == {"a.jpg": reason, "b.jpg": reason}


def test_entries_sharing_their_bytes_unpack_once(tmp_path: Path) -> None:
    payload = sparse_bytes(MiB)
    bomb = overlapping(payload, copies=200)
    assert ratio(bomb) < 100  # the ratio check alone lets every copy through
    assert len(bomb) < 30_000
    found = [verdict for _, verdict in verdicts(reader(tmp_path), bomb)]
    assert found == [MiB] + [OVERLAPPING] * 199


def test_an_entry_stretched_over_the_next_one_is_refused(tmp_path: Path) -> None:
    data = quoted({"a.jpg": sparse_bytes(3000), "b.jpg": sparse_bytes(2000, seed=1)})
    assert walk(reader(tmp_path), data) == {"a.jpg": OVERLAPPING, "b.jpg": 2000}


def test_the_byte_budget_is_shared_by_every_zip_of_a_request(tmp_path: Path) -> None:
    zips = reader(tmp_path, max_zip_total_bytes=int(2.5 * MiB))
    first = make_zip({f"{i}.jpg": sparse_bytes(MiB, seed=i) for i in range(3)})
    second = make_zip({"3.jpg": sparse_bytes(MiB, seed=3)})
    found = walk(zips, first) | walk(zips, second)
    assert [found["0.jpg"], found["1.jpg"]] == [MiB, MiB]
    for late in ("2.jpg", "3.jpg"):  # stopped while unpacking, then before opening
        assert "unpack to more than" in str(found[late])


def test_limits_per_entry_and_per_zip(tmp_path: Path) -> None:
    zips = reader(tmp_path, max_image_bytes=MiB, max_zip_entries=3)
    data = make_zip(
        {
            "big.jpg": sparse_bytes(MiB + 1),
            "flat.bmp": bytes(MiB),  # deflates about 1000 times
            "../evil.jpg": b"x",
        }
    )
    found = walk(zips, data)
    assert "larger than the 1 MB limit" in str(found["big.jpg"])
    assert "zip bombs" in str(found["flat.bmp"])
    assert found["../evil.jpg"] == UNSAFE_PATH
    with pytest.raises(Refused, match="holds 4 files; the limit is 3"):
        walk(zips, make_zip({f"{i}.jpg": b"x" for i in range(4)}))
    with pytest.raises(Refused) as damaged:
        walk(zips, b"PK\x03\x04 not really a zip")
    assert damaged.value.reason == ZIP_DAMAGED
