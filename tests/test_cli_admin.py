"""The local admin commands: migrate, user create, import (same ingest rules as uploads)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def run_autodl(
    *args: str, data_dir: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`autodl ARGS` in a subprocess, with no AUTODL_ setting but those given."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODL_")}
    if data_dir is not None:
        env = {**env, "AUTODL_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_migrate_create_user_and_import_a_folder(tmp_path: Path, hymenoptera: Path) -> None:
    data = tmp_path / "data"
    assert run_autodl("migrate", data_dir=data).returncode == 0
    created = run_autodl(
        "user",
        "create",
        "--email",
        "Ada@Example.com",
        "--password",
        "long enough pw",
        "--token",
        data_dir=data,
    )
    assert created.returncode == 0, created.stderr
    assert "API token: adl_" in created.stdout
    short = run_autodl(
        "user", "create", "--email", "b@example.com", "--password", "short", data_dir=data
    )
    assert short.returncode == 2 and "at least 8" in short.stderr

    folder = tmp_path / "photos"
    for label in ("ants", "bees"):
        (folder / "train" / label).mkdir(parents=True)
        for path in sorted((hymenoptera / "train" / label).iterdir())[:3]:
            shutil.copy(path, folder / "train" / label / path.name)
    (folder / "train" / "ants" / "notes.jpg").write_text("not a picture")
    (folder / ".DS_Store").write_bytes(b"\0")

    imported = run_autodl("import", str(folder), "--project", "Insects", data_dir=data)
    assert imported.returncode == 0, imported.stderr
    assert "6 accepted, 0 duplicates, 2 rejected" in imported.stdout
    again = run_autodl("import", str(folder), "--project", "Insects", data_dir=data)
    assert "0 accepted, 6 duplicates" in again.stdout

    with sqlite3.connect(data / "autodl.db") as db:
        rows = db.execute(
            "SELECT label.name, image.split, count(*) FROM image JOIN label "
            "ON image.label_id = label.id GROUP BY 1, 2 ORDER BY 1"
        ).fetchall()
    assert rows == [("ants", "train", 3), ("bees", "train", 3)]

    missing = run_autodl("import", str(tmp_path / "nope"), "--project", "X", data_dir=data)
    assert missing.returncode == 2 and "not a folder" in missing.stderr
