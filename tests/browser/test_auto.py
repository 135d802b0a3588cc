"""An Auto run in a real browser: the run page and the runs table name the backbones the
model was actually trained on, and the decision table keeps each score in its own unit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.dropping import dataset_files, drop_files
from tests.browser.test_doctor import api_call
from tests.browser.test_pages import assert_no_script_ran, create_project, wait_for_report

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUN_TIMEOUT_S = 1800  # three backbones, two views each, on a busy 2-core CPU


def test_run_page_names_the_backbones_auto_trained(new_session, hymenoptera: Path) -> None:  # type: ignore[no-untyped-def]
    session = new_session()
    page = session.page
    project_id = create_project(page, "Auto")
    drop_files(page, "#dropzone", dataset_files(hymenoptera, per_class=8))
    wait_for_report(page)

    # Asked with lite0 as the backbone; auto may train on others, or on several.
    run = api_call(
        page, "POST", f"/projects/{project_id}/runs", mode="auto", backbone="tf_efficientnet_lite0"
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while run["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, "the auto run did not finish"
        time.sleep(2)
        run = api_call(page, "GET", f"/runs/{run['id']}")
    assert run["status"] == "succeeded", run["error"]
    trained = run["metrics"]["model"]
    assert run["backbones"] == trained["backbones"]
    shown = " + ".join(trained["backbones"])

    page.goto(f"/runs/{run['id']}")
    subtitle = page.locator("#run-subtitle")
    expect(subtitle).to_contain_text(shown)
    expect(subtitle).to_contain_text(trained["head"])
    if trained["backbones"] != ["tf_efficientnet_lite0"]:
        # The backbone asked for is not named as if it had been trained.
        assert subtitle.inner_text().count("tf_efficientnet_lite") == len(trained["backbones"])

    # Each score in its own column and unit: accuracy in %, log loss in nats.
    table = page.locator("#decision-table")
    table.locator("thead th").first.wait_for()
    headers = table.locator("thead th").all_inner_texts()
    assert "CV accuracy (%)" in headers and "CV log loss (nats)" in headers
    loss_column = headers.index("CV log loss (nats)")
    accuracy_column = headers.index("CV accuracy (%)")
    rows = table.locator("tbody tr")
    assert rows.count() == len(run["decision"]["candidates"])
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td").all_inner_texts()
        assert "%" not in cells[loss_column]
        assert cells[accuracy_column].endswith("%")
    screenshot(page, "run-auto-decision")

    page.goto(f"/projects/{project_id}")
    row = page.locator(f"#runs-table tbody tr[data-run-id='{run['id']}']")
    expect(row).to_contain_text(shown)
    assert_no_script_ran(session)
