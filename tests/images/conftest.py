"""Fixtures for image tests: pictures made on the fly, an upload helper, what lies on disk."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from backend.config import Settings
from tests.conftest import ApiUser

Files = list[tuple[str, bytes]]


def picture(
    fmt: str = "JPEG", size: tuple[int, int] = (40, 30), color: object = (200, 40, 40), **save
) -> bytes:
    """A small picture in ``fmt``; a different ``color`` gives different bytes."""
    mode = save.pop("mode", "RGB")
    image = PILImage.new(mode, size, color)  # type: ignore[arg-type]
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def distinct_pictures(n: int, fmt: str = "JPEG") -> list[bytes]:
    return [picture(fmt, color=(i * 7 % 256, i * 13 % 256, 90)) for i in range(n)]


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but carries almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@dataclass
class Disk:
    """What the data directory holds: blobs, thumbnails and leftover temporary files."""

    data_dir: Path

    def _files(self, folder: str) -> set[str]:
        root = self.data_dir / folder
        return {p.name for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()

    @property
    def blobs(self) -> set[str]:
        return self._files("images")

    @property
    def thumbnails(self) -> set[str]:
        return self._files("thumbnails")

    @property
    def temporary(self) -> set[str]:
        return self._files("tmp")


@pytest.fixture
def disk(settings_env: Path) -> Disk:
    return Disk(settings_env)


@pytest.fixture
def settings(client: TestClient) -> Settings:
    """The app's live settings; tests lower a limit with ``monkeypatch.setattr``."""
    from backend.config import get_settings

    return get_settings()


Upload = Callable[..., httpx.Response]


@pytest.fixture
def upload(client: TestClient, user: ApiUser, project: dict) -> Upload:
    def send(
        files: Files,
        *,
        label: str | None = None,
        split: str | None = None,
        pid: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        data = {k: v for k, v in (("label", label), ("split", split)) if v is not None}
        return client.post(
            f"/api/projects/{pid or project['id']}/images",
            files=[
                ("files", (name, content, "application/octet-stream")) for name, content in files
            ],
            data=data,
            headers=user.headers if headers is None else headers,
        )

    return send


@pytest.fixture
def accept(upload: Upload) -> Callable[..., dict]:
    """Upload and insist on 200; returns the report."""

    def send(files: Files, **kwargs) -> dict:
        response = upload(files, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    return send


@pytest.fixture
def list_images(client: TestClient, user: ApiUser, project: dict) -> Callable[..., dict]:
    def get(**params) -> dict:
        response = client.get(
            f"/api/projects/{project['id']}/images", params=params, headers=user.headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    return get


@pytest.fixture
def assert_nothing_stored(list_images: Callable[..., dict], disk: Disk) -> Callable[[], None]:
    """No image row, no blob, no thumbnail, no temporary file left behind."""

    def check() -> None:
        assert list_images()["total"] == 0
        assert disk.blobs == set()
        assert disk.thumbnails == set()
        assert disk.temporary == set()

    return check
