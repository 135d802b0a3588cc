"""A full disk is a 507 that says so, never "could not be read": a real, full tmpfs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ApiUser, missing


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'autodl.db'}"  # off the small disk


@pytest.fixture
def redis_url() -> str:
    return ""


@pytest.fixture(autouse=True)
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """The data dir on a 2 MB tmpfs of its own (needs root, as CI and this container have)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode:
        missing(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield data_dir
    finally:
        subprocess.run(["umount", "-l", str(data_dir)], check=False)


def fill(disk: Path) -> None:
    with (disk / "filler").open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass


def test_upload_to_a_full_disk_is_a_507_saying_so(
    client: TestClient, user: ApiUser, project: dict, small_disk: Path, hymenoptera: Path
) -> None:
    picture = next((hymenoptera / "train" / "ants").glob("*.jpg")).read_bytes()
    fill(small_disk)
    response = client.post(
        f"/api/projects/{project['id']}/images",
        files=[("files", ("ant.jpg", picture, "image/jpeg"))],
        headers=user.headers,
    )
    assert response.status_code == 507, response.text
    assert "out of disk space" in response.json()["detail"]
    assert "JPEG" not in response.json()["detail"]
    (small_disk / "filler").unlink()
    listed = client.get(f"/api/projects/{project['id']}/images", headers=user.headers).json()
    assert listed["total"] == 0
    assert not [p for p in small_disk.rglob("*") if p.is_file()]  # no part file left either
