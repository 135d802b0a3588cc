"""The whole cycle on object storage: an API and a worker with different data dirs share
nothing but PostgreSQL, Redis and an S3 endpoint (moto's standalone server, a real HTTP
S3 API on localhost), so every image and model file must pass through the bucket."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_ADMIN_URL, missing
from tests.e2e.server import autodl_env, follow_events, free_port, signup, spawn, stop
from tests.fleet.cluster import redis_server, upload_unexamined, wait_for

BUCKET = "autodl-fleet"
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server, started once per test session."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), 60, "moto's S3 server")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture
def postgres_url() -> Iterator[str]:
    admin_dsn = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql")
    dsn = admin_dsn.render_as_string(hide_password=False)
    name = f"autodl_s3_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        missing(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.mark.slow
@pytest.mark.postgres
def test_upload_train_download_through_s3_with_nothing_shared_on_disk(
    tmp_path: Path, hymenoptera: Path, s3_endpoint: str, postgres_url: str
) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS["AWS_DEFAULT_REGION"],
    )
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    api_dir, worker_dir = tmp_path / "api-data", tmp_path / "worker-data"
    with redis_server(tmp_path / "redis") as broker:
        shared = {
            **AWS,
            "AWS_ENDPOINT_URL": s3_endpoint,
            "AUTODL_STORAGE_URL": f"s3://{BUCKET}/{prefix}",
            "AUTODL_DATABASE_URL": postgres_url,
            "AUTODL_REDIS_URL": broker.url,
        }
        shared["AUTODL_SECRET_KEY"] = uuid.uuid4().hex + uuid.uuid4().hex  # 256 bits
        api_env = {**autodl_env(api_dir), **shared}
        worker_env = {**autodl_env(worker_dir), **shared}  # its own, empty embedding cache
        port = free_port()
        api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
        api_process = spawn(
            ["serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)], api_env, api_log
        )
        worker = spawn(["worker"], worker_env, worker_log)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _ready(url), 180, f"a ready server\n{api_log}\n{worker_log}")
            with httpx.Client(base_url=url, timeout=120) as anonymous:
                token = signup(anonymous)
            api = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=300
            )
            pid = api.post("/api/projects", json={"name": "on S3"}).json()["id"]
            assert upload_unexamined(api, pid, hymenoptera, per_class=8) == 32
            run_id = api.post(f"/api/projects/{pid}/runs", json={}).json()["id"]
            final = follow_events(api, run_id, timeout=600)[-1]
            assert final["status"] == "succeeded", final["error"]

            wait_for(
                lambda: (
                    not (api.get(f"/api/runs/{run_id}").json()["metrics"] or {}).get(
                        "exports_pending"
                    )
                ),
                300,
                "TorchScript and the bundle",
            )
            onnx = api.get(f"/api/runs/{run_id}/artifacts/onnx")
            assert onnx.status_code == 200
            assert hashlib.sha256(onnx.content).hexdigest() == onnx.headers["x-checksum-sha256"]
            bundle = api.get(f"/api/runs/{run_id}/artifacts/bundle")
            assert bundle.status_code == 200 and bundle.content[:2] == b"PK"
            # The run page's model card link: the card came from the bucket, as the bundle did.
            card_url = api.get(f"/api/runs/{run_id}/usage").json()["model_card_url"]
            assert card_url == f"/api/runs/{run_id}/model-card"
            card = api.get(card_url)
            assert card.status_code == 200, card.text
            assert card.headers["content-type"].startswith("text/markdown")
            assert "## " in card.text and "ants" in card.text

            image = api.get(f"/api/projects/{pid}/images", params={"limit": 1}).json()["items"][0]
            picture = api.get(f"/api/images/{image['id']}/file")
            assert picture.status_code == 200
            assert api.get(f"/api/images/{image['id']}/thumbnail").status_code == 200
            answer = api.post(
                f"/api/runs/{run_id}/predict",
                files=[("file", ("x.jpg", picture.content, "image/jpeg"))],
            )
            assert answer.status_code == 200 and answer.json()["label"] in ("ants", "bees")

            # A worker on another host (its own data dir and cache) finds the first one's
            # embeddings and feature graph in the bucket: nothing is computed again.
            stop(worker)
            other_env = {**autodl_env(tmp_path / "other-worker-data"), **shared}
            worker = spawn(["worker"], other_env, tmp_path / "other-worker.log")
            again = api.post(f"/api/projects/{pid}/runs", json={}).json()["id"]
            final = follow_events(api, again, timeout=600)[-1]
            assert final["status"] == "succeeded", final["error"]
            assert final["metrics"]["featurized"] == {
                "computed": 0,
                "cached": 32,
                "skipped_unreadable": 0,
            }
        finally:
            stop(worker)
            stop(api_process)

    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert sum(k.startswith(f"{prefix}/images/") for k in keys) == 32
    assert sum(k.startswith(f"{prefix}/thumbnails/") for k in keys) == 32
    assert sum(k.startswith(f"{prefix}/cache/embeddings/") for k in keys) == 32
    assert any(k.startswith(f"{prefix}/cache/onnx/") for k in keys)
    assert {
        f"{prefix}/artifacts/run-{run_id}/{name}"
        for name in ("model.onnx", "bundle.zip", "MODEL_CARD.md")
    } <= set(keys)
    # Nothing went through a shared folder: the worker never had the API's images, and the
    # API's model files came from the bucket, into its read cache.
    assert not files_under(worker_dir / "images")
    assert not files_under(api_dir / "images") and not files_under(api_dir / "artifacts")
    assert files_under(api_dir / "storage-cache" / "artifacts")


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/health/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_orphans_in_the_bucket_are_removed_and_used_images_kept(
    client, user, project, hymenoptera: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from backend.config import get_settings
    from backend.images.orphans import remove_orphans
    from tests.conftest import reset_caches
    from tests.factories import add_images

    prefix = f"gc-{uuid.uuid4().hex[:8]}"
    for name, value in {**AWS, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTODL_STORAGE_URL", f"s3://{BUCKET}/{prefix}")
    reset_caches()
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    picture = next((hymenoptera / "train" / "ants").glob("*.jpg")).read_bytes()
    assert add_images(project, {"ant.jpg": picture}, label="ants").accepted
    orphan = "ff" + "e" * 62
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/images/ff/{orphan}", Body=b"never committed")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/thumbnails/ff/{orphan}.jpg", Body=b"jpeg")

    removed = remove_orphans(get_settings(), grace_s=0)
    assert (removed.blobs, removed.thumbnails) == (1, 1)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]}
    sha = hashlib.sha256(picture).hexdigest()
    assert keys == {f"{prefix}/images/{sha[:2]}/{sha}", f"{prefix}/thumbnails/{sha[:2]}/{sha}.jpg"}
