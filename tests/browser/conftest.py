"""A real server (``autodl serve``: API, embedded Redis, a worker) and Debian's Chromium."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import missing
from tests.e2e.server import LiveServer, live_server

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


def _require_chromium() -> None:
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is missing: apt-get install -y chromium")


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, shared_cache_dir: Path
) -> Iterator[LiveServer]:
    """``autodl serve`` with its embedded Redis and worker, as a user starts it."""
    _require_chromium()
    root = tmp_path_factory.mktemp("autodl-browser")
    # Every test signs up a user of its own; test_security.py drives a server in the default
    # mode (first account is the admin, then invitations).
    with live_server(
        root / "data",
        AUTODL_CACHE_DIR=str(shared_cache_dir),
        AUTODL_SIGNUP="open",
        AUTODL_RATE_LIMIT_SIGNUP="1000/hour",
    ) as (running, _):
        yield running


@pytest.fixture(scope="session")
def browser(server: LiveServer) -> Iterator[object]:
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


def open_session(browser, url: str, contexts: list, sign_up: bool = True) -> Session:  # type: ignore[no-untyped-def]
    """A fresh context on the server at ``url`` (signed up as a new user unless told not)."""
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True, base_url=url)
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


@pytest.fixture
def new_session(browser, server: LiveServer):  # type: ignore[no-untyped-def]
    contexts: list = []

    def make(sign_up: bool = True) -> Session:
        return open_session(browser, server.url, contexts, sign_up)

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
