"""`autodl gc` removes what interrupted uploads left, and nothing an image still uses."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.cli import main
from backend.config import get_settings
from backend.storage import ImageStore
from tests.conftest import ApiUser
from tests.factories import add_images


@pytest.fixture
def redis_url() -> str:
    return ""


def aged(path: Path, data: bytes, age_s: float = 7200) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    past = time.time() - age_s
    os.utime(path, (past, past))
    return path


def test_gc_removes_orphans_older_than_the_grace_period(
    client: TestClient, user: ApiUser, project: dict, hymenoptera: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    picture = next((hymenoptera / "train" / "ants").glob("*.jpg"))
    report = add_images(project, {"ant.jpg": picture.read_bytes()}, label="ants")
    assert report.accepted
    settings = get_settings()
    store = ImageStore(settings)
    kept = [p for p in (settings.images_dir, settings.thumbnails_dir) for p in p.rglob("*")]
    kept = [p for p in kept if p.is_file()]
    orphan = "ab" + "0" * 62
    old = [
        aged(store.blob_path(orphan), b"bytes of a row that never committed"),
        aged(store.thumbnail_path(orphan), b"jpeg"),
        aged(settings.tmp_dir / "upload.x1y2.part", b"half an upload"),
        aged(settings.images_dir / "ab" / f".{orphan}.q.part", b"half a rename"),
    ]
    young = aged(settings.tmp_dir / "upload.now.part", b"an upload in progress", age_s=5)

    assert main(["gc"]) == 0  # the default grace period: an hour
    assert "2 part files, 1 image files and 1 thumbnails" in capsys.readouterr().out
    assert not any(p.exists() for p in old)
    assert young.exists() and all(p.exists() for p in kept)

    assert main(["gc", "--grace-s", "0"]) == 0
    assert not young.exists() and all(p.exists() for p in kept)
