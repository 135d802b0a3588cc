"""The second mile, in a real browser with real training: a deleted picture comes back with
Undo; the health card knows an upload is on its way; the Train dialog estimates a first run
from a short measurement on this server; a run trained before a label was renamed says so."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import open_session, screenshot
from tests.browser.dropping import dataset_files, drop_files
from tests.browser.test_doctor import api_call
from tests.browser.test_pages import (
    assert_no_script_ran,
    create_project,
    label_item,
    wait_for_report,
)
from tests.browser.test_runs import wait_until_done
from tests.e2e.server import LiveServer, live_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# What the page shows while an upload sends, recorded at every change of the DOM: the health
# card's words, any label flagged red and the "upload some pictures" hint.
RECORD_WHILE_UPLOADING = """() => {
  window.__seen = [];
  new MutationObserver(() => {
    const upload = document.querySelector(".upload");
    if (!upload || upload.classList.contains("upload-finished")) return;
    window.__seen.push(document.getElementById("health-card").innerText);
    for (const red of document.querySelectorAll(".label-warning.is-bad")) {
      window.__seen.push(`RED ${red.innerText}`);
    }
    const hint = document.getElementById("train-hint");
    if (!hint.hidden) window.__seen.push(`HINT ${hint.innerText}`);
  }).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


@pytest.fixture(scope="module")
def fresh_server(
    tmp_path_factory: pytest.TempPathFactory, shared_cache_dir: Path, server: LiveServer
) -> Iterator[LiveServer]:
    """A server on which no run has ever been measured (its own database and Redis), sharing
    the session's feature graphs and embeddings as a restarted server would keep them."""
    with live_server(
        tmp_path_factory.mktemp("autodl-fresh") / "data",
        AUTODL_CACHE_DIR=str(shared_cache_dir),
        AUTODL_SIGNUP="open",
        AUTODL_RATE_LIMIT_SIGNUP="1000/hour",
    ) as (running, _):
        yield running


def test_deleting_in_the_gallery_is_undone_like_relabel_and_move(  # type: ignore[no-untyped-def]
    new_session, hymenoptera: Path
) -> None:
    session = new_session()
    page = session.page
    project_id = create_project(page, "Undo")
    drop_files(page, "#dropzone", dataset_files(hymenoptera, per_class=3))
    wait_for_report(page)
    expect(page.locator("#gallery .tile")).to_have_count(12)

    tiles = page.locator("#gallery .tile")
    ids = [int(tiles.nth(i).get_attribute("data-id")) for i in range(3)]
    before = {i: api_call(page, "GET", f"/images/{i}") for i in ids}
    files = {i: page.request.get(f"/api/images/{i}/file").body() for i in ids}
    for i in range(3):
        tiles.nth(i).locator(".tile-select").click()
    expect(page.locator("#selection-count")).to_contain_text("3 images selected")

    # Delete at once (no question asked), with an Undo in the toast, as relabel and move.
    page.keyboard.press("Delete")
    toast = page.locator(".toast-undo").filter(has_text="3 images deleted.")
    expect(toast.get_by_role("button", name="Undo")).to_be_visible()
    assert page.locator("dialog[open]").count() == 0
    expect(page.locator("#gallery .tile")).to_have_count(9)
    ants_left = 6 - sum(b["label"] == "ants" for b in before.values())
    expect(label_item(page, "ants").locator(".label-count")).to_have_text(str(ants_left))
    for i in ids:
        assert page.request.get(f"/api/images/{i}").status == 404
    screenshot(page, "gallery-delete-undo", full_page=False)

    toast.get_by_role("button", name="Undo").click()
    expect(page.locator("#gallery .tile")).to_have_count(12)
    same = ("filename", "label", "split", "split_source", "width", "height", "size_bytes")
    for i in ids:
        back = api_call(page, "GET", f"/images/{i}")
        assert {k: back[k] for k in same} == {k: before[i][k] for k in same}
        assert page.request.get(f"/api/images/{i}/file").body() == files[i]
        thumbnail = page.request.get(f"/api/images/{i}/thumbnail")
        assert thumbnail.status == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    expect(label_item(page, "ants").locator(".label-count")).to_have_text("6")

    # Relabel with the keyboard: the same toast, and its Undo puts the label back.
    first = page.locator(f"#gallery .tile[data-id='{ids[0]}']")
    first.locator(".tile-select").click()
    other = "bees" if before[ids[0]]["label"] == "ants" else "ants"
    page.keyboard.press(str(["ants", "bees"].index(other) + 1))
    relabelled = page.locator(".toast-undo").filter(has_text=f"labelled “{other}”")
    relabelled.get_by_role("button", name="Undo").click()
    deadline = time.monotonic() + 20
    while api_call(page, "GET", f"/images/{ids[0]}")["label"] != before[ids[0]]["label"]:
        assert time.monotonic() < deadline, "the relabel was not undone"
        page.wait_for_timeout(200)
    assert api_call(page, "GET", f"/projects/{project_id}")["image_count"] == 12
    assert_no_script_ran(session)


def test_first_run_estimate_upload_in_progress_and_renamed_labels(  # type: ignore[no-untyped-def]
    browser, fresh_server: LiveServer, hymenoptera: Path
) -> None:
    contexts: list = []
    session = open_session(browser, fresh_server.url, contexts)
    page = session.page
    try:
        project_id = create_project(page, "First run")

        # Hold the upload's requests: while they wait, the health card says an upload is on
        # its way (never "no images yet"), and no label is flagged as short of pictures.
        held: list = []
        holding = [True]

        def hold(route):  # type: ignore[no-untyped-def]
            if holding[0] and route.request.method == "POST":
                held.append(route)
            else:
                route.continue_()

        page.route("**/api/projects/*/images", hold)
        page.evaluate(RECORD_WHILE_UPLOADING)
        drop_files(page, "#dropzone", dataset_files(hymenoptera, per_class=10))
        page.locator(".upload .progress").first.wait_for()
        expect(page.locator("#health-message")).to_contain_text("being uploaded")
        expect(page.locator("#health-status")).to_contain_text("upload in progress")
        expect(page.locator("#train-hint")).to_be_hidden()
        deadline = time.monotonic() + 10
        while not held:
            assert time.monotonic() < deadline, "the upload sent nothing"
            page.wait_for_timeout(100)
        screenshot(page, "health-upload-in-progress", full_page=False)
        holding[0] = False
        for route in held:
            route.continue_()
        report = wait_for_report(page)
        assert report.get_attribute("data-accepted") == "40"
        seen = page.evaluate("window.__seen")
        assert seen, "nothing was recorded while the upload sent"
        shown = [t for t in seen if "no images yet" in t or t.startswith(("RED", "HINT"))]
        assert not shown, shown

        # The data doctor checks the pictures (embedding them); then, before any run on this
        # server, the Train dialog has a worker time lite0 on a few of them.
        deadline = time.monotonic() + 180
        while api_call(page, "GET", f"/projects/{project_id}/health")["status"] != "ready":
            assert time.monotonic() < deadline, "the health check did not finish"
            time.sleep(0.5)
        page.click("#train-button")
        cell = page.locator("#backbone-table .time-here[data-backbone='tf_efficientnet_lite0']")
        expect(cell).to_have_attribute("data-source", "measured", timeout=120_000)
        expect(cell).to_contain_text("(est.)")
        expect(page.locator("#train-summary")).to_contain_text("a short measurement")
        estimate = api_call(page, "GET", f"/projects/{project_id}/estimates")["backbones"][
            "tf_efficientnet_lite0"
        ]
        # (The pace may come from the doctor's check; the rest of a run, from the measurement.)
        assert estimate["source"] == "measured"
        screenshot(page, "train-dialog-first-estimate", full_page=False)

        # The run it estimates takes within a factor of two of that.
        page.click("#start-training")
        page.wait_for_url(re.compile(r"/runs/\d+$"))
        first_id = int(page.url.rsplit("/", 1)[1])
        first = wait_until_done(page, first_id)
        load = Path("/proc/loadavg").read_text().split()[:3]
        print(
            f"\nfirst lite0 run: estimated {estimate['linear_s']} s before any run, took "
            f"{first['duration_s']:.1f} s (load {' '.join(load)})"
        )
        assert 0.5 <= first["duration_s"] / estimate["linear_s"] <= 2.0, (estimate, first)

        # Rename a label: the run trained before says which name it learnt.
        page.goto(f"/projects/{project_id}")
        page.get_by_role("button", name="Rename bees").click()
        page.fill("#modal-input", "honey bees")
        page.get_by_role("button", name="Save").click()
        label_item(page, "honey bees").wait_for()
        page.goto(f"/runs/{first_id}")
        page.locator("#dashboard .metric-big").wait_for()
        expect(page.locator("#run-renamed")).to_have_text(
            "Labels renamed since this run: trained as “bees” — now “honey bees”. "
            "This model answers with the names it was trained with."
        )
        screenshot(page, "run-renamed-label")

        # Trained again under the new name: the comparison lines the rows up by label.
        page.click("#rerun")
        page.wait_for_url(lambda url: not url.endswith(f"/runs/{first_id}"))
        second_id = int(page.url.rsplit("/", 1)[1])
        second = wait_until_done(page, second_id)
        assert second["renamed_labels"] == {}
        assert page.locator("#run-renamed").is_hidden()
        page.goto(f"/projects/{project_id}/compare?runs={first_id},{second_id}")
        expect(page.locator("#compare-renamed")).to_contain_text(
            "trained as “bees” — now “honey bees”"
        )
        rows = page.locator("#compare-per-class tbody tr")
        expect(rows).to_have_count(2)
        assert sorted(rows.locator("th").all_inner_texts()) == ["ants", "honey bees"]
        screenshot(page, "compare-renamed-label")
        assert_no_script_ran(session)
    finally:
        for context in contexts:
            context.close()
