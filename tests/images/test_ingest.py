"""The ingest service without HTTP, as ``autodl import`` drives it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from backend.config import get_settings
from backend.db import session_scope
from backend.errors import InvalidInput
from backend.images.ingest import UploadSource, ingest_directory, ingest_files
from backend.projects.models import Project
from tests.conftest import make_zip
from tests.images.conftest import distinct_pictures, picture


def import_folder(project: dict, path: Path):
    with session_scope() as session:
        row = session.get(Project, project["id"])
        return ingest_directory(session, get_settings(), row, path)


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_a_folder_imports_with_the_zip_rules(project, list_images, tmp_path):
    p = distinct_pictures(5)
    root = tmp_path / "dataset"
    write(root / "hymenoptera" / "train" / "ants" / "a.jpg", p[0])
    write(root / "hymenoptera" / "val" / "bees" / "b.jpg", p[1])
    write(root / "hymenoptera" / "test" / "c.png", picture("PNG"))
    write(root / "hymenoptera" / "train" / "ants" / "notes.txt", b"field notes")
    write(root / "hymenoptera" / ".git" / "HEAD", b"ref: refs/heads/main")
    write(root / "hymenoptera" / "train" / "ants" / "copy.jpg", p[0])
    (root / "hymenoptera" / "train" / "ants" / "link.jpg").symlink_to(root / "outside.jpg")
    write(root / "outside.jpg", p[2])

    report = import_folder(project, root)

    accepted = {a.filename: (a.label, a.split) for a in report.accepted}
    assert accepted == {
        "a.jpg": ("ants", "train"),
        "b.jpg": ("bees", "val"),
        "c.png": ("hymenoptera", "test"),
        "outside.jpg": (None, None),
    }
    assert [(d.filename, d.id) for d in report.duplicates] == [
        (
            "hymenoptera/train/ants/copy.jpg",
            next(a.id for a in report.accepted if a.filename == "a.jpg"),
        )
    ]
    rejected = {r.filename: r.reason for r in report.rejected}
    assert set(rejected) == {
        "hymenoptera/.git/",
        "hymenoptera/train/ants/notes.txt",
        "hymenoptera/train/ants/link.jpg",
    }
    assert rejected["hymenoptera/.git/"].startswith("Skipped:")
    assert list_images()["total"] == 4


def test_importing_the_same_folder_twice_stores_nothing_new(project, tmp_path, disk):
    for i, data in enumerate(distinct_pictures(3)):
        write(tmp_path / "photos" / "cats" / f"{i}.jpg", data)
    first = import_folder(project, tmp_path / "photos")
    blobs = disk.blobs
    second = import_folder(project, tmp_path / "photos")
    assert len(first.accepted) == 3 and len(second.duplicates) == 3 and second.accepted == []
    assert disk.blobs == blobs


def test_a_zip_path_imports_like_an_upload(project, tmp_path):
    p = distinct_pictures(2)
    write(tmp_path / "d.zip", make_zip({"train/ants/a.jpg": p[0], "val/bees/b.jpg": p[1]}))
    report = import_folder(project, tmp_path / "d.zip")
    assert {(a.label, a.split) for a in report.accepted} == {("ants", "train"), ("bees", "val")}


def test_a_missing_path_is_an_error(project, tmp_path):
    with pytest.raises(InvalidInput):
        import_folder(project, tmp_path / "nowhere")


def test_ingest_files_takes_any_binary_streams(project):
    with session_scope() as session:
        row = session.get(Project, project["id"])
        report = ingest_files(
            session,
            get_settings(),
            row,
            [UploadSource("a.jpg", io.BytesIO(picture())), UploadSource("b", io.BytesIO(b""))],
            label="ants",
            split="val",
        )
    assert [(a.filename, a.label, a.split) for a in report.accepted] == [("a.jpg", "ants", "val")]
    assert [r.filename for r in report.rejected] == ["b"]


def test_ingest_files_refuses_a_bad_split_before_reading_anything(project):
    with session_scope() as session, pytest.raises(InvalidInput, match="train, val or test"):
        ingest_files(
            session,
            get_settings(),
            session.get(Project, project["id"]),
            [UploadSource("a.jpg", io.BytesIO(picture()))],
            label=None,
            split="everything",
        )
