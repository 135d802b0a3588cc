"""Attacks that need a real browser: where Chromium lands after logging in from a crafted link."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import DESKTOP, PASSWORD
from tests.e2e.server import live_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Each ``next`` was accepted by the server and sent Chromium to evil.example: the browser drops
# tabs and newlines from URLs and reads a backslash as a slash, so "/\t/evil" becomes "//evil".
CRAFTED_NEXT = ("/%09/evil.example/phish", "/%0A/evil.example/phish", "/%0D%0A%09/evil.example/x")
CRAFTED_NEXT_BACKSLASH = "/%09%5Cevil.example/phish"


@pytest.mark.parametrize("crafted", [*CRAFTED_NEXT, CRAFTED_NEXT_BACKSLASH])
def test_logging_in_from_a_crafted_link_stays_on_this_site(new_session, server, crafted) -> None:  # type: ignore[no-untyped-def]
    account = new_session()  # signs up, then logs out below to use the crafted login link
    page = account.page
    visited_elsewhere: list[str] = []
    page.context.route(
        lambda url: urlsplit(url).hostname not in ("127.0.0.1", None),
        lambda route: (visited_elsewhere.append(route.request.url), route.fulfill(body="phished")),
    )
    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto(f"/login?next={crafted}")
    page.fill("#email", account.email)
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert visited_elsewhere == []
    assert urlsplit(page.url).path == "/projects"
    assert urlsplit(page.url).netloc == urlsplit(server.url).netloc


def test_the_login_script_ignores_an_off_site_next_even_if_the_page_carried_one(  # type: ignore[no-untyped-def]
    new_session, server
) -> None:
    account = new_session()
    page = account.page
    page.click("#logout")
    page.wait_for_url("**/login")
    # What a server-side slip would hand the script: the check in auth.js must still hold.
    page.evaluate("document.getElementById('auth-form').dataset.next = '/\\t/evil.example/x'")
    page.fill("#email", account.email)
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url == f"{server.url}/projects"


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_render_offline_under_their_csp(new_session, server, path) -> None:  # type: ignore[no-untyped-def]
    session = new_session(sign_up=False)
    page = session.page
    elsewhere: list[str] = []
    page.context.route(
        lambda url: urlsplit(url).hostname not in ("127.0.0.1", None),
        lambda route: (elsewhere.append(route.request.url), route.abort()),
    )
    page.goto(path)
    page.get_by_text("/api/projects/{pid}/labels").first.wait_for()
    assert elsewhere == []
    # ReDoc's bundle shows its maker's logo from their CDN: the policy blocks that image, and
    # that is the only thing it may block.
    assert [e for e in session.errors if "cdn.redoc.ly/redoc/logo-mini.svg" not in e] == []


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory, browser):  # type: ignore[no-untyped-def]
    """A server in the default sign-up mode, with no account yet."""
    with live_server(tmp_path_factory.mktemp("fresh") / "data", worker=False) as (running, _):
        yield running


def test_first_run_admin_invites_someone_and_disables_them(browser, fresh_server) -> None:  # type: ignore[no-untyped-def]
    def context():  # type: ignore[no-untyped-def]
        ctx = browser.new_context(viewport=DESKTOP, base_url=fresh_server.url)
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        return ctx, page

    admin_ctx, admin = context()
    guest_ctx, guest = context()
    try:
        admin.goto("/signup")
        expect(admin.locator("h1")).to_have_text("Create the admin account")
        admin.fill("#email", "root@example.com")
        admin.fill("#password", PASSWORD)
        admin.click("button[type=submit]")
        admin.wait_for_url("**/projects")
        admin.click("#admin-link")
        admin.wait_for_url("**/admin")
        admin.fill("#invite-email", "guest@example.com")
        admin.click("#invite-form button[type=submit]")
        link = admin.locator("#new-link-url")
        expect(link).to_have_value(re.compile(r"/signup\?invite=adl_"))

        guest.goto("/signup")
        expect(guest.locator("#signup-closed")).to_contain_text("by invitation")
        guest.goto(link.input_value())
        guest.fill("#email", "guest@example.com")
        guest.fill("#password", "password")
        guest.click("button[type=submit]")
        expect(guest.locator("#auth-error")).to_contain_text("top-10 common password")
        guest.fill("#password", PASSWORD)
        guest.click("button[type=submit]")
        guest.wait_for_url("**/projects")
        assert guest.locator("#admin-link").count() == 0

        admin.reload()
        row = admin.locator("tr[data-email='guest@example.com']")
        row.get_by_role("button", name="Disable").click()
        admin.get_by_role("button", name="Disable", exact=True).last.click()
        expect(row.locator(".pill")).to_have_text("Disabled")
        guest.goto("/projects")
        assert "/login?next=%2Fprojects" in guest.url
    finally:
        admin_ctx.close()
        guest_ctx.close()
