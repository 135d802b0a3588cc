"""An Auto run in a real browser: the run page and the runs table name the backbones the
model was actually trained on, and the decision table keeps each score in its own unit."""

from __future__ import annotations

import subprocess
import sys
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


def test_run_page_names_the_backbones_auto_trained(  # type: ignore[no-untyped-def]
    new_session, hymenoptera: Path, tmp_path: Path
) -> None:
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

    # The download area's Python code, run as copied next to the downloaded ONNX model (the
    # whole ensemble, when auto combined backbones: one input per backbone, each its own
    # size and normalisation), says what the server's model says.
    help_card = page.locator("#deploy-help")
    expect(help_card.locator("#snippet-python")).to_contain_text("INPUTS = [")
    inputs = help_card.locator("#model-inputs").inner_text()
    if len(trained["backbones"]) > 1:
        assert f"{len(trained['backbones'])} inputs, one per backbone" in inputs
    with page.expect_download() as download_info:
        page.click("a.download[data-format=onnx]")
    folder = tmp_path / "copied"
    folder.mkdir()
    download_info.value.save_as(folder / download_info.value.suggested_filename)
    picture = sorted((hymenoptera / "val" / "bees").iterdir())[-1]
    (folder / "picture.jpg").write_bytes(picture.read_bytes())
    printed = subprocess.run(
        [sys.executable, "-c", help_card.locator("#snippet-python").inner_text()],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    label, probability = " ".join(printed[:-1]), float(printed[-1])
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "autodl_csrf")
    served = page.request.post(
        f"/api/runs/{run['id']}/predict",
        multipart={
            "file": {"name": "p.jpg", "mimeType": "image/jpeg", "buffer": picture.read_bytes()}
        },
        headers={"X-CSRF-Token": csrf},
    ).json()
    assert label == served["label"]
    assert abs(probability - served["probabilities"][label]) < 0.02  # JPEG draft decoding aside

    page.goto(f"/projects/{project_id}")
    row = page.locator(f"#runs-table tbody tr[data-run-id='{run['id']}']")
    expect(row).to_contain_text(shown)
    assert_no_script_ran(session)
