"""The data doctor in a real browser: the health card after an upload, a leakage fix, the
keyboard review queue with undo, and a heatmap and a relabel from a run's mistakes."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.dropping import dataset_files, drop_files
from tests.browser.test_pages import assert_no_script_ran, create_project, wait_for_report
from tests.worker.planted import near_copy

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPORT_TIMEOUT_MS = 180_000


def api_call(page, method: str, path: str, **body: object) -> dict:  # type: ignore[no-untyped-def]
    """The page's own session (cookie and CSRF header), as its scripts call the API."""
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "autodl_csrf")
    response = page.request.fetch(
        f"/api{path}", method=method, data=body or None, headers={"X-CSRF-Token": csrf}
    )
    assert response.ok, response.text()
    return response.json() if response.status != 204 else {}


def images(page, project_id: int, **params: object) -> list[dict]:  # type: ignore[no-untyped-def]
    query = "&".join(f"{k}={v}" for k, v in {"limit": 500, **params}.items())
    return api_call(page, "GET", f"/projects/{project_id}/images?{query}")["items"]


def label_of(page, image_id: int) -> str:  # type: ignore[no-untyped-def]
    return api_call(page, "GET", f"/images/{image_id}")["label"]


def wait_for(check, timeout_s: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_health_card_leakage_fix_review_queue_and_undo(
    new_session, hymenoptera: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    session = new_session()
    page = session.page
    project_id = create_project(page, "Doctor")
    original = sorted((hymenoptera / "train" / "ants").iterdir())[0]
    copy = tmp_path / "copy-of-an-ant.jpg"
    copy.write_bytes(near_copy(original, 0))
    files = [
        *dataset_files(hymenoptera, per_class=15),
        ("hymenoptera/val/ants/copy-of-an-ant.jpg", copy),
    ]
    drop_files(page, "#dropzone", files)
    wait_for_report(page)

    # The upload started a check; its card appears with the copy found as leakage.
    leakage = page.locator("#health-findings .finding[data-kind=leakage]")
    leakage.wait_for(timeout=REPORT_TIMEOUT_MS)
    expect(page.locator("#health-fit .status")).to_have_text("Good fit")
    screenshot(page, "health-card")
    [copy_row] = [im for im in images(page, project_id) if im["filename"] == copy.name]
    assert copy_row["split"] == "val"
    page.click("#fix-leakage")
    expect(page.locator(".toast-undo")).to_contain_text("moved into their original")
    wait_for(lambda: api_call(page, "GET", f"/images/{copy_row['id']}")["split"] == "train")

    # Four training ants labelled bees by mistake; the fresh check flags them.
    ants = [im for im in images(page, project_id, split="train") if im["label"] == "ants"]
    flipped = {im["id"] for im in ants[1:5]}
    api_call(page, "PATCH", f"/projects/{project_id}/images", ids=sorted(flipped), label="bees")
    page.click("#health-check")
    page.locator("#review-label-errors").wait_for(timeout=REPORT_TIMEOUT_MS)
    page.click("#review-label-errors")
    dialog = page.locator("#review-dialog[open]")
    dialog.wait_for()
    screenshot(page, "health-review-queue", full_page=False)

    item = dialog.locator(".review-item")
    image_id = int(item.get_attribute("data-image-id"))
    given = page.locator("#review-given").inner_text()
    suggested = page.locator("#review-suggested").inner_text()
    assert given != suggested
    page.keyboard.press("a")  # accept the suggestion
    wait_for(lambda: label_of(page, image_id) == suggested)
    expect(page.locator("#review-progress")).to_contain_text("relabelled 1")
    page.keyboard.press("z")  # undo: the label is restored
    wait_for(lambda: label_of(page, image_id) == given)
    expect(page.locator("#review-progress")).to_contain_text("relabelled 0")
    assert int(dialog.locator(".review-item").get_attribute("data-image-id")) == image_id
    page.keyboard.press("a")
    wait_for(lambda: label_of(page, image_id) == suggested)
    # D deletes the next image after a confirmation, Z puts it back with its label.
    next_id = int(dialog.locator(".review-item").get_attribute("data-image-id"))
    next_label = label_of(page, next_id)
    page.keyboard.press("d")
    page.locator("dialog[open] button[value=ok]", has_text="Delete").click()
    wait_for(lambda: all(im["id"] != next_id for im in images(page, project_id)))
    page.keyboard.press("z")
    wait_for(lambda: any(im["id"] == next_id for im in images(page, project_id)))
    assert label_of(page, next_id) == next_label
    assert int(dialog.locator(".review-item").get_attribute("data-image-id")) == next_id
    page.keyboard.press("Escape")

    # Closing the queue re-estimates the accuracy and says what the relabel did.
    effect = page.locator("#health-effect")
    effect.wait_for(timeout=REPORT_TIMEOUT_MS)
    assert re.search(
        r"Relabelled 1, accuracy re-estimated \d+\.\d% → \d+\.\d%", effect.inner_text()
    )
    screenshot(page, "health-effect")
    assert_no_script_ran(session)


def test_a_mistake_shows_where_the_model_looked_and_a_relabel_is_undone(
    new_session, hymenoptera: Path
) -> None:  # type: ignore[no-untyped-def]
    session = new_session()
    page = session.page
    project_id = create_project(page, "Mistakes")
    drop_files(page, "#dropzone", dataset_files(hymenoptera, per_class=10))
    wait_for_report(page)
    # Three validation ants labelled bees: the model's answers for them are "mistakes".
    val_ants = [im for im in images(page, project_id, split="val") if im["label"] == "ants"]
    wrong = sorted(im["id"] for im in val_ants[:3])
    api_call(page, "PATCH", f"/projects/{project_id}/images", ids=wrong, label="bees")
    run = api_call(
        page,
        "POST",
        f"/projects/{project_id}/runs",
        mode="linear",
        backbone="tf_efficientnet_lite0",
    )
    wait_for(
        lambda: any(
            a["format"] == "torchscript"
            for a in api_call(page, "GET", f"/runs/{run['id']}")["artifacts"]
        ),
        timeout_s=300,
    )
    page.goto(f"/runs/{run['id']}")
    mistake = page.locator("#mistakes .pred").filter(has=page.locator(".fix-relabel")).first
    mistake.wait_for()

    mistake.locator(".heatmap-toggle").click()
    overlay = mistake.locator("img.heatmap-overlay")
    overlay.wait_for(timeout=120_000)
    expect(overlay).to_be_visible()
    expect(mistake.locator(".heatmap-toggle")).to_have_attribute("aria-pressed", "true")
    screenshot(page, "run-heatmap")
    mistake.locator(".heatmap-toggle").click()
    expect(overlay).to_be_hidden()

    image_id = int(
        re.search(r"/images/(\d+)/", mistake.locator("img").first.get_attribute("src"))[1]
    )
    before = label_of(page, image_id)
    mistake.locator(".fix-relabel").click()
    wait_for(lambda: label_of(page, image_id) != before)
    page.locator(".toast-undo button").click()
    wait_for(lambda: label_of(page, image_id) == before)
    assert_no_script_ran(session)
