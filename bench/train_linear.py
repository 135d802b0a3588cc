"""Wall time of whole linear runs through the API, as a user gets them.

Starts ``autodl serve`` (embedded Redis, SQLite, one worker) in a temporary data dir,
warms the worker up with a 4-image run (imports, the backbone's one-time ONNX export),
then uploads hymenoptera (398 images) and times, from POST /runs to the final event:

- cold: no embedding of these images cached yet;
- warm: the same run again (every embedding cached), ``--warm N`` times.

Before each timed run the bench waits until the server's processes stop using CPU (the
previous run's TorchScript and bundle, the health check each upload and run triggers), so a
figure never includes queueing behind background work; beside each wall time it prints the
CPU seconds the server's processes spent on the run, the figure to trust on a busy machine.

Run: ``PYTHONPATH=$PWD .venv/bin/python bench/train_linear.py [--backbone NAME] [--warm 3]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared" / "datasets" / "hymenoptera"
TARGETS = {"cold": 15.0, "warm": 3.0}


def zip_of(files: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in files:
            archive.write(path, path.relative_to(DATASET).as_posix())
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(
    data_dir: Path, timeout_s: float = 240, **env_extra: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``autodl serve`` (embedded Redis, SQLite, one worker) on a free port with ``data_dir``,
    once it is ready (database, broker and a worker's heartbeat); its URL and process."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODL_")}
    env.update(AUTODL_DATA_DIR=str(data_dir), AUTODL_SECRET_KEY="bench", **env_extra)
    command = ["serve", "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", *command],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{url}/api/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready in {timeout_s:.0f} s")
            time.sleep(0.5)
        yield url, server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def signed_in(url: str, timeout_s: float = 600) -> httpx.Client:
    """A client of a new account on the server at ``url``."""
    body = {"email": "b@example.com", "password": "bench correct horse staple"}
    signup = httpx.post(f"{url}/api/auth/signup", json=body)
    assert signup.status_code == 201, signup.text
    token = signup.json()["token"]
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s
    )


def server_cpu_s(server_pid: int) -> float:
    """User + system CPU seconds of the server's child processes (worker pool included)."""
    total = 0.0
    for proc in psutil.Process(server_pid).children(recursive=True):
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def pool_pids(server_pid: int) -> set[int]:
    """The server's child processes' ids (a pool process replaced shows up as a new id)."""
    return {proc.pid for proc in psutil.Process(server_pid).children(recursive=True)}


def quiesce(server_pid: int, timeout: float = 300) -> None:
    """Wait until the server's processes use (almost) no CPU for a second."""
    deadline = time.monotonic() + timeout
    last = server_cpu_s(server_pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = server_cpu_s(server_pid)
        if now - last < 0.05:
            return
        last = now


def timed_run(
    api: httpx.Client, pid: int, backbone: str, head: str, server_pid: int
) -> tuple[float, dict]:
    quiesce(server_pid)
    cpu = server_cpu_s(server_pid)
    before = pool_pids(server_pid)
    started = time.perf_counter()
    run = api.post(
        f"/api/projects/{pid}/runs",
        json={"mode": "linear", "backbone": backbone, "options": {"head": head}},
    ).json()
    final: dict = {}
    with api.stream("GET", f"/api/runs/{run['id']}/events", timeout=None) as stream:
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "end":
                final = json.loads(line[6:])
                break
    seconds = time.perf_counter() - started
    final["cpu_s"] = server_cpu_s(server_pid) - cpu
    final["new_processes"] = len(pool_pids(server_pid) - before)
    final["load"] = os.getloadavg()[0]
    return seconds, final


def wait_for_exports(api: httpx.Client, run_id: int) -> float:
    """Seconds until TorchScript and the bundle, made after the run succeeds, are listed."""
    started = time.perf_counter()
    while (api.get(f"/api/runs/{run_id}").json()["metrics"] or {}).get("exports_pending"):
        time.sleep(0.25)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--head", default="logreg")
    parser.add_argument("--warm", type=int, default=1, help="warm runs to time")
    parser.add_argument("--model-card", type=Path, help="save the warm run's MODEL_CARD.md here")
    args = parser.parse_args()
    if not DATASET.is_dir():
        sys.exit(f"dataset not found at {DATASET}")
    files = sorted(p for p in DATASET.rglob("*") if p.is_file())

    with tempfile.TemporaryDirectory() as tmp, serving(Path(tmp) / "data") as (url, server):
        api = signed_in(url)
        warmup = api.post("/api/projects", json={"name": "warm-up"}).json()["id"]
        few = [
            sorted((DATASET / split / label).iterdir())[-1]
            for split in ("train", "val")
            for label in ("ants", "bees")
        ]
        api.post(
            f"/api/projects/{warmup}/images",
            files=[("files", ("w.zip", zip_of(few), "application/zip"))],
        )
        warm_up_s, _ = timed_run(api, warmup, args.backbone, args.head, server.pid)

        pid = api.post("/api/projects", json={"name": "hymenoptera"}).json()["id"]
        started = time.perf_counter()
        report = api.post(
            f"/api/projects/{pid}/images",
            files=[("files", ("h.zip", zip_of(files), "application/zip"))],
        ).json()
        upload_s = time.perf_counter() - started
        cold_s, cold = timed_run(api, pid, args.backbone, args.head, server.pid)
        wait_for_exports(api, cold["id"])  # the worker finishes them before the next run
        warms = []
        for _ in range(args.warm):
            warms.append(timed_run(api, pid, args.backbone, args.head, server.pid))
            warm = warms[-1][1]
            extras_s = wait_for_exports(api, warm["id"])
        if args.model_card:
            bundle = api.get(f"/api/runs/{warm['id']}/artifacts/bundle").content
            with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
                card = next(n for n in archive.namelist() if n.endswith("MODEL_CARD.md"))
                args.model_card.write_bytes(archive.read(card))

    load = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} cores, load average {load:.1f}; backbone {args.backbone}, "
        f"head {args.head}"
    )
    print(f"upload of {len(report['accepted'])} images (zip): {upload_s:.1f} s")
    print(
        "warm-up run (4 images: imports, first export of the backbone's feature graph): "
        f"{warm_up_s:.1f} s"
    )
    print(
        f"{'run':<6} {'target s':>9} {'measured s':>11} {'server CPU s':>13} {'load':>6} "
        f"{'featurized':>11} {'accuracy':>9} {'new procs':>9}"
    )
    runs = [("cold", cold_s, cold)] + [("warm", s, final) for s, final in warms]
    for name, seconds, final in runs:
        m = final.get("metrics") or {}
        print(
            f"{name:<6} {TARGETS[name]:>9.1f} {seconds:>11.1f} {final['cpu_s']:>13.2f} "
            f"{final['load']:>6.1f} "
            f"{m.get('featurized', {}).get('computed', '?'):>11} {m.get('accuracy', 0):>9.3f} "
            f"{final['new_processes']:>9}"
        )
        print(f"       timings: {m.get('timings')}")
    print(f"TorchScript + bundle ready {extras_s:.1f} s after the warm run ended")
    return 0


if __name__ == "__main__":
    sys.exit(main())
