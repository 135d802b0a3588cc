"""Uploaded zip files, read one entry at a time within limits.

The one zip reader of the upload ingest and of predictions. Before an entry is unpacked it
must have a safe path, no encryption, a compression method this server can unpack, a size
under the per-file cap, a plausible compression ratio and bytes of its own (entries that
share compressed bytes are how small zips unpack to gigabytes). While it is read, every
entry of one request spends one unpacked-bytes budget, and a bad CRC or a damaged stream
ends that entry only. Each refusal carries a reason in plain words.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import IO

from backend.config import Settings

UNSAFE_PATH = (
    "Skipped: this entry's path points outside the zip's folder (or uses a drive letter or "
    "backslashes), so it was not opened."
)
ENCRYPTED = "This entry of the zip is password-protected; unpack it and upload the pictures."
UNSUPPORTED_METHOD = (
    "This entry of the zip uses a compression method this server cannot unpack; "
    "zip it again with the usual settings (deflate)."
)
ZIP_BOMB = (
    "Skipped: this entry unpacks to far more than its compressed size "
    "(over {ratio} times), as zip bombs do."
)
OVERLAPPING = (
    "Skipped: this entry shares its compressed bytes with another entry of the zip, "
    "as zip bombs do."
)
ZIP_DAMAGED = "This zip file is damaged or incomplete and could not be opened."
ZIP_ENTRY_DAMAGED = "This entry of the zip is damaged and could not be unpacked."

SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra length
_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
# What zipfile raises for a bad entry: CRC mismatch, bad header, and NotImplementedError
# for a compression method it cannot unpack (not a placeholder: an answer to report).
_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    ValueError,
)


class Refused(Exception):
    """A file, zip or zip entry that is not taken; ``reason`` is shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def too_large(max_bytes: int) -> str:
    return f"This file is larger than the {max_bytes / 1024**2:g} MB limit per picture."


@dataclass(frozen=True)
class Entry:
    """A file inside a zip (or a folder): its name as given, its path segments, its bytes."""

    name: str
    parts: tuple[str, ...]
    open: Callable[[], AbstractContextManager[IO[bytes]]]


@dataclass(frozen=True)
class RefusedEntry:
    name: str
    reason: str


class ZipReader:
    """The zips of one request: limits per zip and per entry, one budget for all of them."""

    def __init__(self, settings: Settings) -> None:
        self.max_entries = settings.max_zip_entries
        self.max_entry_bytes = settings.max_image_bytes
        self.max_ratio = settings.max_zip_ratio
        self.max_total_bytes = settings.max_zip_total_bytes
        self.bytes_left = settings.max_zip_total_bytes

    @contextmanager
    def entries(self, fileobj: IO[bytes]) -> Iterator[list[Entry | RefusedEntry]]:
        """Every file entry of the zip in ``fileobj``, in order, each either openable (one at
        a time, within the budget) or refused with its reason; ``Refused`` for the whole
        zip when it cannot be opened or holds too many files."""
        try:
            if fileobj.seekable():
                fileobj.seek(0)
            archive = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise Refused(ZIP_DAMAGED) from exc
        with archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
            if len(infos) > self.max_entries:
                raise Refused(
                    f"This zip holds {len(infos)} files; the limit is {self.max_entries} "
                    "per zip. Split it into smaller zips."
                )
            yield [
                self._entry(archive, info, end)
                for info, end in _with_data_ends(archive)
                if not info.is_dir()
            ]

    def _entry(
        self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, end: int
    ) -> Entry | RefusedEntry:
        try:
            parts = safe_parts(info.filename)
            self._check(info)
        except Refused as exc:
            return RefusedEntry(info.filename, exc.reason)
        return Entry(info.filename, parts, lambda: self._open(archive, info, end))

    def _check(self, info: zipfile.ZipInfo) -> None:
        if info.flag_bits & 0x1:
            raise Refused(ENCRYPTED)
        if info.compress_type not in _METHODS:
            raise Refused(UNSUPPORTED_METHOD)
        if info.file_size > self.max_entry_bytes:
            raise Refused(too_large(self.max_entry_bytes))
        if info.file_size and (
            info.compress_size <= 0 or info.file_size > self.max_ratio * info.compress_size
        ):
            raise Refused(ZIP_BOMB.format(ratio=self.max_ratio))

    def _open(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, end: int) -> _Budgeted:
        if self.bytes_left <= 0:
            raise Refused(self._budget_reason())
        try:
            if _data_start(archive, info) + info.compress_size > end:
                raise Refused(OVERLAPPING)
            return _Budgeted(archive.open(info), self)
        except _READ_ERRORS as exc:
            raise Refused(ZIP_ENTRY_DAMAGED) from exc

    def spend(self, n: int) -> None:
        self.bytes_left -= n
        if self.bytes_left < 0:
            raise Refused(self._budget_reason())

    def _budget_reason(self) -> str:
        gb = self.max_total_bytes / 1024**3
        return (
            f"Not unpacked: the zip files in this upload unpack to more than {gb:g} GB in total. "
            "Send them in smaller parts."
        )


class _Budgeted:
    """A zip entry's stream that spends the request's unpacked-bytes budget as it is read."""

    def __init__(self, raw: IO[bytes], reader: ZipReader) -> None:
        self.raw = raw
        self.reader = reader

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.raw.read(size)
        except _READ_ERRORS as exc:
            raise Refused(ZIP_ENTRY_DAMAGED) from exc
        self.reader.spend(len(data))
        return data

    def __enter__(self) -> IO[bytes]:
        return self  # type: ignore[return-value]

    def __exit__(self, *exc: object) -> None:
        self.raw.close()


def _with_data_ends(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, int]]:
    """Each entry with the offset its bytes must end by: the next entry's header, or the
    central directory for the last one (of entries that start at one place, the first
    listed keeps the room and the others overlap it)."""
    infos = archive.infolist()
    ends = [archive.start_dir] * len(infos)
    end = archive.start_dir
    for i in sorted(range(len(infos)), key=lambda i: infos[i].header_offset, reverse=True):
        ends[i] = end
        end = infos[i].header_offset
    return list(zip(infos, ends, strict=True))


def _data_start(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """The offset of the entry's compressed bytes, right after its local header."""
    if archive.fp is None:
        raise zipfile.BadZipFile("the zip is closed")
    archive.fp.seek(info.header_offset)
    header = archive.fp.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size:
        raise zipfile.BadZipFile("truncated local file header")
    signature, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    if signature != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad local file header")
    return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length


def safe_parts(name: str) -> tuple[str, ...]:
    """The path segments of a zip entry, refusing anything that could escape a folder."""
    if "\\" in name or name.startswith("/") or _DRIVE.match(name) or _CONTROL.search(name):
        raise Refused(UNSAFE_PATH)
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if not parts or ".." in parts:
        raise Refused(UNSAFE_PATH)
    return parts


def is_hidden(part: str) -> bool:
    """A hidden or system file or folder (``.DS_Store``, ``__MACOSX``, ``Thumbs.db``)."""
    return part.startswith(".") or part.lower() in SYSTEM_FILES
