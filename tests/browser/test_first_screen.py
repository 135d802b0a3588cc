"""The first screen says what autodl does in three steps and leads to sign-up; the sign-up
form names every problem at once, at its field, in words."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_first_screen_then_sign_up_with_every_error_at_once(new_session) -> None:  # type: ignore[no-untyped-def]
    session = new_session(sign_up=False)
    page = session.page
    page.goto("/")
    expect(page.locator("h1")).to_contain_text("Teach a computer")
    steps = page.locator(".steps .step h2").all_inner_texts()
    assert steps == ["Drop your pictures", "Train", "Use the model"]
    screenshot(page, "first-screen")
    page.click("#landing-signup")
    page.wait_for_url("**/signup")

    page.fill("#email", "not-an-email")
    page.fill("#password", "short")
    page.click("button[type=submit]")
    expect(page.locator("#email-error")).to_contain_text("does not look like an email address")
    expect(page.locator("#password-error")).to_contain_text("at least 8 characters")
    expect(page.locator("#auth-error")).to_contain_text("Please fix 2 things")
    assert page.locator("#email").get_attribute("aria-invalid") == "true"
    assert "email:" not in page.locator("#auth-error").inner_text()  # words, not field names
    screenshot(page, "signup-errors")

    # The server's own refusal (a guessable password) is shown in words at its field too.
    page.fill("#email", session.email)
    page.fill("#password", "password")
    page.click("button[type=submit]")
    expect(page.locator("#password-error")).to_be_visible()
    assert page.locator("#email-error").is_hidden()
    assert not page.locator("#password-error").inner_text().startswith("password:")

    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/projects")
    assert session.errors == []
