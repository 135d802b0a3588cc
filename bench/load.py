"""Load on one ``autodl serve`` (SQLite, embedded Redis, one worker) from 50 simulated users.

Starts the server in a temporary data dir on 127.0.0.1, seeds 5 accounts (each with a
project of 40 hymenoptera pictures and a trained linear run), then runs locust in-process
for ``--seconds`` (180), measured once every user has logged in as one of the accounts (the
log-ins are printed apart): each user mixes image listings, project reads, uploads of a new
small picture, progress streams (the run's Server-Sent Events) and predictions on one
picture. Prints requests, failures and the median / p95 /
p99 latency per kind of request beside the targets (zero errors; p99 < 500 ms for listings
and predictions). Traffic goes to 127.0.0.1 only and stops by itself.

Run: ``.venv/bin/python bench/load.py [--users 50] [--seconds 180]``.
"""

from __future__ import annotations

import gevent.monkey

gevent.monkey.patch_all()

import argparse  # noqa: E402
import collections  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import httpx  # noqa: E402
from locust import HttpUser, between, events, task  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.exception import StopUser  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared" / "datasets" / "hymenoptera"
PASSWORD = "correct horse battery"
ERROR_RECORD = re.compile(r"^(\S+ )?(ERROR|CRITICAL)\b")  # backend/logs.py: time level ...
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout)\b")
TARGET_P99_MS = {"list images": 500, "predict": 500}
ACCOUNTS: list[dict[str, object]] = []
LOGINS_ANSWERED: list[int] = []
PICTURE = next(iter(sorted((DATASET / "val" / "bees").glob("*.jpg"))))


def small_picture(seed: int) -> bytes:
    """A new 64 x 64 picture per upload, so that each one is decoded and stored."""
    rng = random.Random(seed)
    image = Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def seed_account(url: str, n: int) -> dict[str, object]:
    email = f"load{n}@example.com"
    with httpx.Client(base_url=url, timeout=600) as anonymous:
        body = {"email": email, "password": PASSWORD}
        token = anonymous.post("/api/auth/signup", json=body).raise_for_status().json()["token"]
    with httpx.Client(
        base_url=url, timeout=600, headers={"Authorization": f"Bearer {token}"}
    ) as api:
        pid = api.post("/api/projects", json={"name": f"load {n}"}).raise_for_status().json()["id"]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for split, label in itertools.product(("train", "val"), ("ants", "bees")):
                for path in sorted((DATASET / split / label).glob("*.jpg"))[:10]:
                    archive.write(path, f"{split}/{label}/{path.name}")
        files = {"files": ("set.zip", buffer.getvalue(), "application/zip")}
        api.post(f"/api/projects/{pid}/images", files=files).raise_for_status()
        rid = api.post(f"/api/projects/{pid}/runs", json={"mode": "linear"}).json()["id"]
        while api.get(f"/api/runs/{rid}").json()["status"] not in ("succeeded", "failed"):
            time.sleep(1)
        assert api.get(f"/api/runs/{rid}").json()["status"] == "succeeded"
    return {"email": email, "pid": pid, "rid": rid}


class ProjectUser(HttpUser):
    """Someone working in a project: looking at pictures, adding some, trying the model."""

    wait_time = between(0.5, 2.0)
    uploads = itertools.count()

    def on_start(self) -> None:
        self.account = random.choice(ACCOUNTS)
        body = {"email": self.account["email"], "password": PASSWORD}
        response = self.client.post("/api/auth/login", json=body, name="log in")
        LOGINS_ANSWERED.append(response.status_code)
        if response.status_code != 200:
            raise StopUser()  # counted as a failure by locust
        self.client.headers["Authorization"] = f"Bearer {response.json()['token']}"
        self.client.cookies.clear()

    @task(6)
    def list_images(self) -> None:
        offset = random.choice((0, 0, 20))
        self.client.get(
            f"/api/projects/{self.account['pid']}/images?limit=50&offset={offset}",
            name="list images",
        )

    @task(3)
    def read_project(self) -> None:
        self.client.get(f"/api/projects/{self.account['pid']}", name="project")
        self.client.get("/api/projects", name="list projects")

    @task(2)
    def predict(self) -> None:
        files = {"file": (PICTURE.name, PICTURE.read_bytes(), "image/jpeg")}
        self.client.post(f"/api/runs/{self.account['rid']}/predict", files=files, name="predict")

    @task(1)
    def upload(self) -> None:
        n = next(self.uploads)
        files = {"files": (f"new-{n}.png", small_picture(n), "image/png")}
        self.client.post(
            f"/api/projects/{self.account['pid']}/images",
            files=files,
            data={"label": "bees", "split": "train"},
            name="upload",
        )

    @task(1)
    def progress(self) -> None:
        with self.client.get(
            f"/api/runs/{self.account['rid']}/events",
            name="progress stream",
            stream=True,
            catch_response=True,
        ) as stream:
            for line in stream.iter_lines():
                if line == b"event: end":
                    break
            if stream.status_code != 200:
                stream.failure(f"HTTP {stream.status_code}")


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODL_")}
    env.update(
        AUTODL_DATA_DIR=str(data_dir),
        AUTODL_SIGNUP="open",
        # One address plays 50 people here: the per-address limits are for real clients.
        AUTODL_RATE_LIMIT_LOGIN="1000/minute",
        PYTHONPATH=str(REPO),
    )
    command = [sys.executable, "-m", "backend.cli", "serve", "--port", str(port)]
    log = (data_dir.parent / "serve.log").open("ab")
    command += ["--log-level", "warning"]
    return subprocess.Popen(command, env=env, stdout=log, stderr=log)


def wait_healthy(url: str) -> None:
    for _ in range(180):
        try:
            if httpx.get(f"{url}/api/health", timeout=5).json().get("worker", {}).get("alive"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError("the server did not become healthy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=180)
    parser.add_argument("--port", type=int, default=8790)
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory() as folder:
        server = start_server(Path(folder) / "data", args.port)
        try:
            wait_healthy(url)
            ACCOUNTS.extend(seed_account(url, n) for n in range(5))
            load = os.getloadavg()
            environment = Environment(user_classes=[ProjectUser], host=url, events=events)
            runner = environment.create_local_runner()
            runner.start(args.users, spawn_rate=10)
            logins = log_everyone_in(environment, args.users)
            gevent.sleep(args.seconds)
            runner.quit()
            report(environment, args, load, os.getloadavg())
            failures = environment.stats.total.num_failures + logins
        finally:
            server.terminate()
            server.wait(timeout=30)
            server_errors = print_server_errors(Path(folder) / "serve.log")
    return 1 if failures or server_errors else 0


def log_everyone_in(environment: Environment, users: int, timeout_s: float = 600) -> int:
    """Wait until every user has logged in, print the log-ins, then start measuring afresh:
    the three minutes measured are people working, not 50 argon2 checks at once (those are
    shown apart). Returns the failed log-ins."""
    deadline = time.monotonic() + timeout_s
    while len(LOGINS_ANSWERED) < users and time.monotonic() < deadline:
        gevent.sleep(0.5)
    entry = environment.stats.get("log in", "POST")
    print(
        f"{len(LOGINS_ANSWERED)} log-ins at once (production argon2 cost): "
        f"{entry.num_failures} failed, median {entry.get_response_time_percentile(0.5):.0f} ms, "
        f"slowest {entry.max_response_time:.0f} ms"
    )
    for error in environment.stats.errors.values():
        print(f"error: {error.method} {error.name}: {error.error} x{error.occurrences}")
    failed = entry.num_failures + users - len(LOGINS_ANSWERED)
    environment.stats.reset_all()
    return failed


def print_server_errors(log: Path) -> int:
    """The server's own account of what went wrong (its log goes with the temporary folder):
    how many errors it logged, and each exception line of their tracebacks, counted, so a
    500 under load shows its cause."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    logged = sum(1 for line in lines if ERROR_RECORD.match(line))
    causes = collections.Counter(line[:240] for line in lines if EXCEPTION_LINE.match(line))
    print(f"server errors in its log: {logged}")
    for cause, count in causes.most_common(20 if logged else 0):
        print(f"  x{count}: {cause}")
    return logged


def report(environment: Environment, args: argparse.Namespace, before, after) -> None:  # type: ignore[no-untyped-def]
    stats = environment.stats
    print(f"{args.users} users for {args.seconds} s against one `autodl serve`")
    print(
        f"load average before {before[0]:.2f} / {before[1]:.2f} / {before[2]:.2f}, "
        f"after {after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f}"
    )
    columns = ("count", 7), ("fail", 5), ("median", 8), ("p95", 7), ("p99", 7), ("target p99", 11)
    print(f"{'request':<18} " + " ".join(f"{name:>{width}}" for name, width in columns))
    for entry in sorted(stats.entries.values(), key=lambda e: e.name):
        target = TARGET_P99_MS.get(entry.name)
        print(
            f"{entry.name:<18} {entry.num_requests:>7} {entry.num_failures:>5} "
            f"{entry.get_response_time_percentile(0.5):>6.0f}ms "
            f"{entry.get_response_time_percentile(0.95):>5.0f}ms "
            f"{entry.get_response_time_percentile(0.99):>5.0f}ms "
            f"{'< ' + str(target) + ' ms' if target else '':>11}"
        )
    total = stats.total
    print(
        f"{'all':<18} {total.num_requests:>7} {total.num_failures:>5}  "
        f"{total.total_rps:.1f} requests/s"
    )
    for error in stats.errors.values():
        print(f"error: {error.method} {error.name}: {error.error} x{error.occurrences}")


if __name__ == "__main__":
    sys.exit(main())
