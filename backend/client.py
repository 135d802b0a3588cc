"""A small HTTP client of the autodl API, used by the remote ``autodl`` commands."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from httpx_sse import SSEError, connect_sse

from backend.storage import atomic_path

UPLOAD_BATCH_FILES = 50
UPLOAD_BATCH_BYTES = 64 * 1024**2
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".zip"}


class ClientError(Exception):
    """An API answer the user should read (the server's ``detail``)."""


def config_path() -> Path:
    override = os.environ.get("AUTODL_CLIENT_CONFIG")
    if override:
        return Path(override)
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "autodl" / "client.json"


@dataclass
class Credentials:
    url: str
    token: str

    def save(self) -> Path:
        path = config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"url": self.url, "token": self.token}))
        path.chmod(0o600)
        return path

    @classmethod
    def load(cls) -> Credentials:
        url = os.environ.get("AUTODL_URL")
        token = os.environ.get("AUTODL_TOKEN")
        if url and token:
            return cls(url, token)
        path = config_path()
        if not path.is_file():
            raise ClientError("Not logged in: run `autodl login URL` first.")
        data = json.loads(path.read_text())
        return cls(data["url"], data["token"])


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text or response.reason_phrase


class ApiClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 300) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    @classmethod
    def from_credentials(cls) -> ApiClient:
        credentials = Credentials.load()
        return cls(credentials.url, credentials.token)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"Could not reach {self.http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise ClientError(f"{response.status_code}: {_detail(response)}")
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def login(self, email: str, password: str) -> str:
        body = self.json("POST", "/api/auth/login", json={"email": email, "password": password})
        return str(body["token"])

    def projects(self) -> list[dict[str, Any]]:
        return list(self.json("GET", "/api/projects"))

    def project_id(self, name_or_id: str) -> int:
        """A project by id or exact name; a name that does not exist yet is created."""
        projects = self.projects()
        for project in projects:
            if str(project["id"]) == name_or_id or project["name"] == name_or_id:
                return int(project["id"])
        return int(self.json("POST", "/api/projects", json={"name": name_or_id})["id"])

    def upload(
        self,
        project_id: int,
        paths: list[Path],
        label: str | None = None,
        split: str | None = None,
        on_batch: Callable[[int, int, dict[str, Any]], None] | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """Upload files, folders (sent with their relative paths, so folders name labels)
        and zips, in batches; returns the merged per-file report."""
        files = list(iter_upload_files(paths))
        report: dict[str, list[dict[str, Any]]] = {"accepted": [], "duplicates": [], "rejected": []}
        done = 0
        for batch in batches(files):
            handles: list[BinaryIO] = [path.open("rb") for _, path in batch]
            try:
                multipart = [
                    ("files", (name, handle, "application/octet-stream"))
                    for (name, _), handle in zip(batch, handles, strict=True)
                ]
                data = {k: v for k, v in (("label", label), ("split", split)) if v}
                answer = self.json(
                    "POST", f"/api/projects/{project_id}/images", files=multipart, data=data
                )
            finally:
                for handle in handles:
                    handle.close()
            for key in report:
                report[key].extend(answer.get(key, []))
            done += len(batch)
            if on_batch:
                on_batch(done, len(files), answer)
        return report

    def train(self, project_id: int, mode: str, backbone: str, options: dict[str, Any]) -> dict:
        body = {"mode": mode, "backbone": backbone, "options": options}
        return dict(self.json("POST", f"/api/projects/{project_id}/runs", json=body))

    def runs(self, project_id: int) -> list[dict[str, Any]]:
        return list(self.json("GET", f"/api/projects/{project_id}/runs"))

    def run(self, run_id: int) -> dict[str, Any]:
        return dict(self.json("GET", f"/api/runs/{run_id}"))

    def events(self, run_id: int) -> Iterator[dict[str, Any]]:
        """The run's Server-Sent Events until it ends."""
        try:
            yield from run_events(self.http, run_id)
        except (httpx.HTTPError, SSEError) as exc:
            raise ClientError(f"Lost the connection to the server: {exc}") from exc

    def download(self, run_id: int, fmt: str, dest: Path, wait_s: float = 300) -> Path:
        """Save a model file; a format still being exported after the run is waited for."""
        deadline = time.monotonic() + wait_s
        while True:
            pending = (self.run(run_id).get("metrics") or {}).get("exports_pending") or []
            if fmt not in pending or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        with self.http.stream("GET", f"/api/runs/{run_id}/artifacts/{fmt}") as stream:
            if stream.status_code >= 400:
                stream.read()
                raise ClientError(f"{stream.status_code}: {_detail(stream)}")
            name = _attachment_name(stream.headers.get("content-disposition", ""))
            target = dest / name if dest.is_dir() else dest
            with atomic_path(target) as tmp, tmp.open("wb") as out:
                for chunk in stream.iter_bytes():
                    out.write(chunk)
        return target

    def health(self, project_id: int, check: bool = False) -> dict[str, Any]:
        """The data doctor's report; ``check`` starts a fresh computation first."""
        method = "POST" if check else "GET"
        return dict(self.json(method, f"/api/projects/{project_id}/health"))

    def wait_health(
        self,
        project_id: int,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        poll_s: float = 1.0,
    ) -> dict[str, Any]:
        """Poll the report until it is no longer being computed."""
        while True:
            report = self.health(project_id)
            if report["status"] != "computing":
                return report
            if on_progress:
                on_progress(report)
            time.sleep(poll_s)

    def predict(self, run_id: int, images: list[Path]) -> list[dict[str, Any]]:
        results = []
        for path in images:
            with path.open("rb") as handle:
                answer = self.json(
                    "POST", f"/api/runs/{run_id}/predict", files=[("file", (path.name, handle))]
                )
            if "results" in answer:
                results.extend(answer["results"])
            else:
                results.append({"filename": str(path), **answer})
        return results


def run_events(
    http: httpx.Client, run_id: int, timeout: float | None = None
) -> Iterator[dict[str, Any]]:
    """Each event of ``/api/runs/{run_id}/events`` as ``{"event": name, **payload}``, until
    ``end``."""
    with connect_sse(http, "GET", f"/api/runs/{run_id}/events", timeout=timeout) as source:
        if source.response.status_code >= 400:
            source.response.read()
            raise ClientError(f"{source.response.status_code}: {_detail(source.response)}")
        for event in source.iter_sse():
            if not event.data:  # the retry hint
                continue
            yield {"event": event.event, **event.json()}
            if event.event == "end":
                return


def _attachment_name(header: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "filename":
            return Path(value.strip('"')).name or "model"
    return "model"


def iter_upload_files(paths: list[Path]) -> Iterator[tuple[str, Path]]:
    """(name sent to the server, path): a folder's files keep their path below the folder."""
    for path in paths:
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                    yield file.relative_to(path).as_posix(), file
        elif path.is_file():
            yield path.name, path
        else:
            raise ClientError(f"{path} does not exist.")


def batches(files: list[tuple[str, Path]]) -> Iterator[list[tuple[str, Path]]]:
    batch: list[tuple[str, Path]] = []
    size = 0
    for name, path in files:
        file_size = path.stat().st_size
        if batch and (len(batch) >= UPLOAD_BATCH_FILES or size + file_size > UPLOAD_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((name, path))
        size += file_size
    if batch:
        yield batch


def wait_message(run: dict[str, Any]) -> str:
    eta = f", about {run['eta_s']:.0f}s left" if run.get("eta_s") else ""
    counts = (
        f" {run['images_done']}/{run['images_total']} images" if run.get("images_total") else ""
    )
    return f"{run['status']}: {run['stage']} {run['progress'] * 100:5.1f}%{counts}{eta}"
