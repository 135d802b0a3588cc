"""Schemathesis against a live ``autodl serve``: every operation of the OpenAPI schema with
``--checks all``, authenticated, on real data (a project, labels, images and a trained run),
within a time budget. Exits non-zero on any 5xx or schema violation.

Run: ``.venv/bin/python tests/fuzz/run_schemathesis.py [--max-time 100]``; the slow test
tests/fuzz/test_schemathesis.py runs it in ``make test``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.conftest import HYMENOPTERA, hymenoptera_zip  # noqa: E402
from tests.e2e.server import LiveServer, live_server  # noqa: E402

CONFIG = Path(__file__).with_name("schemathesis.toml")
# Operations that would end the fuzzer's own session: it would test the rest unauthenticated.
# tests/auth covers them.
OWN_SESSION = r"^/api/auth/(logout|tokens/\{tid\})$|^/api/admin/users/\{uid\}/(reset|disable)$"


def seed(server: LiveServer, timeout_s: float = 240) -> tuple[str, dict[str, object]]:
    """An account with a project, labels, images and a succeeded run; returns the token and
    the ids to put in the operations' paths."""
    client = server.client()
    body = {"email": "fuzz@example.com", "password": "correct horse battery"}
    token = client.post("/api/auth/signup", json=body).raise_for_status().json()["token"]
    client = server.client(token)
    pid = client.post("/api/projects", json={"name": "fuzz"}).raise_for_status().json()["id"]
    archive = hymenoptera_zip(HYMENOPTERA, per_class=6)
    files = {"files": ("hymenoptera.zip", archive, "application/zip")}
    images = client.post(f"/api/projects/{pid}/images", files=files).raise_for_status().json()
    labels = client.get(f"/api/projects/{pid}/labels").raise_for_status().json()
    run = client.post(f"/api/projects/{pid}/runs", json={"mode": "linear"}).raise_for_status()
    rid = run.json()["id"]
    wait_for_run(client, rid, timeout_s)
    return token, {
        "path.pid": pid,
        "path.lid": labels[0]["id"],
        "path.iid": images["accepted"][0]["id"],
        "path.rid": rid,
        "path.fmt": "onnx",
        "path.uid": 1,
    }


def wait_for_run(client: httpx.Client, rid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get(f"/api/runs/{rid}").json()["status"] not in ("succeeded", "failed"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the seed run {rid} did not finish in {timeout_s:.0f} s")
        time.sleep(2)


def scratch(
    server: LiveServer, token: str, parameters: dict[str, object], timeout_s: float = 240
) -> dict[str, dict[str, object]]:
    """Objects the deleting operations may delete (the seeded ones must last the run)."""
    client = server.client(token)
    # A second run of the seeded project, for DELETE /api/runs/{rid} (deleting the seeded
    # one left 16 operations answering 404 for the rest of the run).
    pid = parameters["path.pid"]
    spare = client.post(f"/api/projects/{pid}/runs", json={"mode": "linear"}).raise_for_status()
    wait_for_run(client, spare.json()["id"], timeout_s)
    pid = client.post("/api/projects", json={"name": "scratch"}).raise_for_status().json()["id"]
    lid = client.post(f"/api/projects/{pid}/labels", json={"name": "x"}).json()["id"]
    image = next(p for p in sorted((HYMENOPTERA / "val" / "ants").iterdir()))
    files = {"files": (image.name, image.read_bytes(), "image/jpeg")}
    iid = client.post(f"/api/projects/{pid}/images", files=files).json()["accepted"][0]["id"]
    invite = client.post("/api/admin/invites", json={"email": "guest@example.com"}).json()
    return {
        "DELETE /api/runs/{rid}": {"path.rid": spare.json()["id"]},
        "DELETE /api/projects/{pid}": {"path.pid": pid},
        "DELETE /api/projects/{pid}/labels/{lid}": {"path.pid": pid, "path.lid": lid},
        "DELETE /api/images/{iid}": {"path.iid": iid},
        "POST /api/projects/{pid}/images/delete": {"path.pid": pid},
        "DELETE /api/admin/invites/{iid}": {"path.iid": invite["id"]},
    }


def _table(values: dict[str, object]) -> str:
    return ", ".join(f'"{key}" = {json.dumps(value)}' for key, value in values.items())


def config_with(
    parameters: dict[str, object], per_operation: dict[str, dict[str, object]], folder: Path
) -> Path:
    """tests/fuzz/schemathesis.toml plus the ids of the seeded objects."""
    lines = [CONFIG.read_text(), "", "[parameters]"]
    lines += [f'"{key}" = {json.dumps(value)}' for key, value in parameters.items()]
    for name, values in per_operation.items():
        lines += [
            "",
            "[[operations]]",
            f'include-name = "{name}"',
            f"parameters = {{ {_table(values)} }}",
        ]
    path = folder / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def fuzz(server: LiveServer, max_time_s: int, folder: Path) -> tuple[int, str]:
    started = time.monotonic()
    token, parameters = seed(server)
    per_operation = scratch(server, token, parameters)
    seeded = f"seeded a project, images and a trained run in {time.monotonic() - started:.0f} s\n"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config_with(parameters, per_operation, folder)),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {token}",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-time",
        str(max_time_s),
        "--workers",
        "1",  # CPython 3.11's parser is not thread-safe under hypothesis's lambda sources
        "--exclude-path-regex",
        OWN_SESSION,
        "--no-color",
        "--seed",
        "1",
    ]
    # cwd: schemathesis keeps a .schemathesis/ cache in its working directory, not the repo's.
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=max_time_s + 120, cwd=folder
    )
    return done.returncode, seeded + done.stdout + done.stderr


def summary(output: str) -> str:
    """The closing lines: cases generated, failures and errors found."""
    lines = [ln for ln in output.splitlines() if re.search(r"generated|failures|passed|errors", ln)]
    return "\n".join(lines[-3:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", type=int, default=100, help="seconds of fuzzing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        with live_server(
            data,
            AUTODL_SIGNUP="open",
            AUTODL_PASSWORD_HASH_TIME_COST="1",
            AUTODL_PASSWORD_HASH_MEMORY_KIB="1024",
        ) as (server, _):
            code, output = fuzz(server, args.max_time, Path(folder))
    print(output)
    return code


if __name__ == "__main__":
    sys.exit(main())
