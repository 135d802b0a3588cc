"""Hostile zip files, made by patching the headers of honest ones (zipfile cannot write them)."""

from __future__ import annotations

import io
import random
import struct
import zipfile
from collections.abc import Callable

from tests.conftest import make_zip

Value = Callable[[zipfile.ZipInfo], int]
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory, no comment


def _headers(data: bytes) -> list[tuple[int, int]]:
    """(local header offset, central header offset) of every entry."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        central = archive.start_dir
        pairs = []
        for info in archive.infolist():
            pairs.append((info.header_offset, central))
            name_length, extra_length, comment_length = struct.unpack_from(
                "<3H", data, central + 28
            )
            central += 46 + name_length + extra_length + comment_length
    return pairs


def _patch(data: bytes, local_at: int, central_at: int, fmt: str, value: Value) -> bytes:
    """Write ``value(entry)`` at ``local_at``/``central_at`` bytes into each entry's local and
    central headers."""
    patched = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    for info, (local, central) in zip(infos, _headers(data), strict=True):
        struct.pack_into(fmt, patched, local + local_at, value(info))
        struct.pack_into(fmt, patched, central + central_at, value(info))
    return bytes(patched)


def encrypted(data: bytes) -> bytes:
    """Every entry flagged as encrypted (Python cannot write real ZipCrypto)."""
    patched = bytearray(data)
    for local, central in _headers(data):
        patched[local + 6] |= 0x01
        patched[central + 8] |= 0x01
    return bytes(patched)


def deflate64(data: bytes) -> bytes:
    """Every entry claims method 9 (Deflate64), which zipfile cannot unpack."""
    return _patch(data, 8, 10, "<H", lambda _: 9)


def bad_crc(data: bytes) -> bytes:
    """Every entry's CRC-32 is wrong: the bytes unpack, the check at the end fails."""
    return _patch(data, 14, 16, "<L", lambda info: info.CRC ^ 0xFFFFFFFF)


def sparse_bytes(size: int, seed: int = 0) -> bytes:
    """Not a picture, and deflates well but under the ratio limit: one random byte in 256."""
    data = bytearray(size)
    data[::256] = random.Random(seed).randbytes(len(data[::256]))
    return bytes(data)


def overlapping(payload: bytes, copies: int, name: str = "x.jpg") -> bytes:
    """One compressed entry that the central directory lists ``copies`` times: each listed
    entry unpacks the same bytes, so the zip unpacks to ``copies`` times its payload."""
    data = make_zip({name: payload})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        start = archive.start_dir
    central, eocd = data[start : -_EOCD.size], _EOCD.unpack(data[-_EOCD.size :])
    signature, disk, cd_disk, _, _, _, _, comment = eocd
    end = _EOCD.pack(
        signature, disk, cd_disk, copies, copies, len(central) * copies, start, comment
    )
    return data[:start] + central * copies + end


def ratio(data: bytes) -> float:
    """How many times the first entry unpacks its compressed size."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.infolist()[0]
    return info.file_size / info.compress_size


def quoted(entries: dict[str, bytes]) -> bytes:
    """A stored zip whose first entry is stretched over every entry after it (its sizes run
    to the central directory), so it unpacks their headers and bytes again."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, payload in entries.items():
            archive.writestr(name, payload)
        start = archive.start_dir
    data = bytearray(buffer.getvalue())
    (local, central), *_ = _headers(bytes(data))
    name_length, extra_length = struct.unpack_from("<2H", data, local + 26)
    size = start - (local + 30 + name_length + extra_length)
    for sizes_at in (local + 18, central + 20):  # compressed size, then size
        struct.pack_into("<2L", data, sizes_at, size, size)
    return bytes(data)
