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


def test_user_commands_make_an_admin_invite_disable_enable_and_reset(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = run_autodl(
        "user", "create", "--email", "ada@example.com", "--password", "correct horse battery",
        "--admin", "--token", data_dir=data,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    weak = run_autodl(
        "user", "create", "--email", "bob@example.com", "--password", "password", data_dir=data
    )
    assert weak.returncode == 1 and "common password" in weak.stderr

    invite = run_autodl(
        "user", "invite", "Bob@Example.com", "--url", "https://ml.example/", data_dir=data
    )
    assert invite.returncode == 0, invite.stderr
    assert invite.stdout.splitlines()[-1].startswith("https://ml.example/signup?invite=adl_")
    taken = run_autodl("user", "invite", "ada@example.com", data_dir=data)
    assert taken.returncode == 1 and "already exists" in taken.stderr

    def account() -> tuple[int, str | None, int]:
        with sqlite3.connect(data / "autodl.db") as db:
            admin, disabled = db.execute("SELECT is_admin, disabled_at FROM user").fetchone()
            (tokens,) = db.execute("SELECT count(*) FROM api_token").fetchone()
        return admin, disabled, tokens

    assert account() == (1, None, 1)
    assert run_autodl("user", "disable", "ada@example.com", data_dir=data).returncode == 0
    _, disabled, tokens = account()
    assert disabled is not None and tokens == 0
    assert run_autodl("user", "enable", "ada@example.com", data_dir=data).returncode == 0
    assert account()[1] is None
    reset = run_autodl("user", "reset", "ada@example.com", data_dir=data)
    assert reset.returncode == 0, reset.stderr
    assert "/reset?token=adl_" in reset.stdout.splitlines()[-1]
    unknown = run_autodl("user", "disable", "nobody@example.com", data_dir=data)
    assert unknown.returncode == 1 and "No account" in unknown.stderr
