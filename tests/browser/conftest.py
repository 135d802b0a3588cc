"""A real server (``autodl serve``: API, embedded Redis, a worker) and Debian's Chromium."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery"
SERVE = [sys.executable, "-m", "backend.cli", "serve", "--host", "127.0.0.1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require_chromium() -> None:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Server:
    url: str
    data_dir: Path
    log: Path


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _require_chromium()
    root = tmp_path_factory.mktemp("autodl-browser")
    data_dir = root / "data"
    log = root / "serve.log"
    port = _free_port()
    env = {
        **os.environ,
        "AUTODL_DATA_DIR": str(data_dir),
        "AUTODL_DATABASE_URL": "",
        "AUTODL_REDIS_URL": "",
        "AUTODL_SECRET_KEY": "browser-" + uuid.uuid4().hex,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*SERVE, "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process, log)
        yield Server(url, data_dir, log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Health answers, and the worker answers a ping (so training starts at once)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"autodl serve exited early:\n{log.read_text()[-3000:]}")
        try:
            body = httpx.get(f"{url}/api/health", timeout=5).json()
            if body.get("status") == "ok" and body.get("worker", {}).get("alive"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"autodl serve did not become ready:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def browser(server: Server) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@dataclass
class Session:
    """A browser context signed in as a fresh user, recording any JavaScript dialog."""

    page: object
    context: object
    email: str
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def new_session(browser, server: Server):  # type: ignore[no-untyped-def]
    contexts = []

    def make(sign_up: bool = True) -> Session:
        context = browser.new_context(viewport=DESKTOP, accept_downloads=True, base_url=server.url)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        session = Session(page, context, f"user-{uuid.uuid4().hex[:8]}@example.com")
        page.on("dialog", lambda d: (session.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: session.errors.append(str(e)))
        page.on(
            "console",
            lambda m: (
                session.errors.append(m.text)
                if m.type == "error" and "Content Security Policy" in m.text
                else None
            ),
        )
        if sign_up:
            page.goto("/signup")
            page.fill("#email", session.email)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/projects")
        return session

    yield make
    for context in contexts:
        context.close()


def screenshot(page, name: str, full_page: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Save the page at 1280 px and at phone width, then restore the desktop size."""
    SCREENSHOTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # a sticky header is drawn once, at the top
    page.screenshot(path=str(SCREENSHOTS / f"{name}-1280.png"), full_page=full_page)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(150)  # let responsive charts re-lay out
    page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=full_page)
    page.set_viewport_size(DESKTOP)
    page.wait_for_timeout(100)
