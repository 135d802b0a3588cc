"""The `autodl` command drives a whole cycle against a running server, as a script would."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.server import live_server, signup
from tests.test_cli_admin import run_autodl

pytestmark = pytest.mark.slow


def test_cli_upload_train_download_predict(
    tmp_path: Path, hymenoptera: Path, shared_cache_dir: Path
) -> None:
    folder = tmp_path / "pictures"
    for split in ("train", "val"):
        for label in ("ants", "bees"):
            (folder / split / label).mkdir(parents=True)
            for path in sorted((hymenoptera / split / label).iterdir())[:8]:
                shutil.copy(path, folder / split / label / path.name)

    with live_server(tmp_path / "data", AUTODL_CACHE_DIR=str(shared_cache_dir)) as (server, _):
        with server.client() as anonymous:
            signup(anonymous)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODL_")}
        env["AUTODL_CLIENT_CONFIG"] = str(tmp_path / "client.json")

        login = run_autodl(
            "login",
            server.url,
            "--email",
            "e2e@example.com",
            "--password",
            "correct horse",
            env=env,
        )
        assert login.returncode == 0, login.stderr
        assert json.loads((tmp_path / "client.json").read_text())["url"] == server.url

        empty = run_autodl("health", "Empty", env=env)
        assert empty.returncode == 1 and "no images yet" in empty.stderr

        upload = run_autodl("upload", "Bugs", str(folder), env=env)
        assert upload.returncode == 0, upload.stderr
        assert "32 accepted, 0 duplicates, 0 rejected" in upload.stdout

        # The upload queued the data doctor's check; wait for it like a script would.
        health = run_autodl("health", "Bugs", "--wait", "--json", env=env)
        assert health.returncode == 0, health.stderr
        report = json.loads(health.stdout)
        assert report["status"] == "ready" and report["stats"]["images"] == 32
        assert report["domain_fit"]["verdict"] in ("good", "fair", "poor")
        shown = run_autodl("health", "Bugs", "--check", "--wait", env=env)
        assert shown.returncode == 0, shown.stderr
        assert "Health of the project (tf_efficientnet_lite0" in shown.stdout
        assert "domain_fit" in shown.stdout and "For the next run" in shown.stdout

        projects = run_autodl("projects", env=env)
        assert "Bugs" in projects.stdout and "32" in projects.stdout

        train = run_autodl(
            "train", "Bugs", "--backbone", "tf_efficientnet_lite0", "--wait", env=env
        )
        assert train.returncode == 0, train.stderr
        assert "accuracy" in train.stdout and "succeeded" in train.stdout
        run_id = train.stdout.split("run ", 1)[1].split()[0]

        runs = run_autodl("runs", "Bugs", env=env)
        assert "succeeded" in runs.stdout

        for fmt in ("onnx", "bundle"):
            download = run_autodl("download", run_id, "--format", fmt, "-o", str(tmp_path), env=env)
            assert download.returncode == 0, download.stderr
        assert list(tmp_path.glob("autodl-run*.onnx")) and list(tmp_path.glob("autodl-run*.zip"))

        image = next((folder / "val" / "bees").iterdir())
        predict = run_autodl("predict", run_id, str(image), "--json", env=env)
        assert predict.returncode == 0, predict.stderr
        (answer,) = json.loads(predict.stdout)
        assert answer["label"] in ("ants", "bees")
        assert abs(sum(answer["probabilities"].values()) - 1) < 1e-4

        missing = run_autodl("download", "9999", env=env)
        assert missing.returncode == 1 and "404" in missing.stderr
