"""Runs as objects in a real browser, with real training: rename, deploy (the project's stable
prediction endpoint, shown on the project page), train again, compare side by side, delete."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.dropping import dataset_files, drop_files
from tests.browser.test_doctor import api_call
from tests.browser.test_pages import assert_no_script_ran, create_project, wait_for_report

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TRAINING_TIMEOUT_MS = 300_000
EXPORTS_TIMEOUT_MS = 180_000


def wait_until_done(page, run_id: int) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + TRAINING_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        run = api_call(page, "GET", f"/runs/{run_id}")
        if run["status"] not in ("queued", "running"):
            assert run["status"] == "succeeded", run["error"]
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish")


def predict_on_project(page, project_id: int, picture: Path):  # type: ignore[no-untyped-def]
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "autodl_csrf")
    return page.request.post(
        f"/api/projects/{project_id}/predict",
        multipart={
            "file": {"name": picture.name, "mimeType": "image/jpeg", "buffer": picture.read_bytes()}
        },
        headers={"X-CSRF-Token": csrf},
    )


def test_rename_deploy_rerun_compare_and_delete_runs(new_session, hymenoptera: Path) -> None:  # type: ignore[no-untyped-def]
    session = new_session()
    page = session.page
    project_id = create_project(page, "Runs as objects")
    drop_files(page, "#dropzone", dataset_files(hymenoptera, per_class=10))
    wait_for_report(page)

    page.click("#train-button")
    page.locator("#backbone-tf_efficientnet_lite0").wait_for()
    page.click("#start-training")
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    first_id = int(page.url.rsplit("/", 1)[1])
    page.locator("#dashboard .metric-big").wait_for(timeout=TRAINING_TIMEOUT_MS)

    # Rename: the title, the breadcrumb and the API agree.
    page.click("#rename-run")
    page.fill("#modal-input", "Baseline <b>lite0</b>")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#run-title")).to_have_text("Baseline <b>lite0</b>")
    expect(page.locator("#crumb-run")).to_have_text("Baseline <b>lite0</b>")
    assert api_call(page, "GET", f"/runs/{first_id}")["name"] == "Baseline <b>lite0</b>"

    # Deploy: the project's endpoint answers with this model, the project page says so.
    picture = sorted((hymenoptera / "val" / "bees").iterdir())[-1]
    assert predict_on_project(page, project_id, picture).status == 409
    page.click("#deploy-run")
    expect(page.locator("#run-deployed")).to_be_visible()
    expect(page.locator("#deploy-run")).to_have_text("Stop deploying")
    answer = predict_on_project(page, project_id, picture)
    assert answer.status == 200, answer.text()
    assert answer.json()["label"] in ("ants", "bees")
    screenshot(page, "run-deployed")

    # Deploy help: code per way of running it; a token made on the page works with curl's URL.
    help_card = page.locator("#deploy-help")
    expect(help_card.locator("#snippet-python")).to_contain_text("onnxruntime")
    help_card.locator("#deploy-tab-javascript").click()
    expect(help_card.locator("#snippet-javascript")).to_contain_text("onnxruntime-web")
    help_card.locator("#deploy-tab-csharp").click()
    expect(help_card.locator("#snippet-csharp")).to_contain_text("InferenceSession")
    help_card.locator("#deploy-tab-curl").click()
    help_card.locator("#make-token").click()
    expect(help_card.locator("#snippet-curl")).not_to_contain_text("AUTODL_TOKEN=...")
    curl = help_card.locator("#snippet-curl").inner_text()
    token = re.search(r"export AUTODL_TOKEN=(\S+)", curl).group(1)
    project_url = re.findall(r"(http://\S+/api/projects/\d+/predict)", curl)[0]
    hosted = httpx.post(
        project_url,
        headers={"Authorization": f"Bearer {token}"},
        files={"file": (picture.name, picture.read_bytes(), "image/jpeg")},
        timeout=60,
    )
    assert hosted.status_code == 200, hosted.text
    assert hosted.json()["label"] == answer.json()["label"]
    # The model card is written with the zip bundle, after the run: the link appears then.
    expect(help_card.locator("#model-card")).to_be_visible(timeout=EXPORTS_TIMEOUT_MS)
    card_href = help_card.locator("#model-card").get_attribute("href")
    assert "## " in page.request.get(card_href).text()
    screenshot(page, "run-deploy-help")

    # The optional int8 download says what it costs in accuracy, as the API measured it, and
    # the download area says which runtime and precision computed the features.
    int8 = page.locator('#downloads a[data-format="onnx-int8"]')
    expect(int8).to_contain_text("pt vs fp32", timeout=EXPORTS_TIMEOUT_MS)
    expect(int8).to_contain_text(
        api_call(page, "GET", f"/runs/{first_id}")["metrics"]["int8"]["summary"]
    )
    expect(page.locator("#runtimes-used")).to_contain_text("validation images with onnxruntime f32")

    # Train again with the same settings: a new run, same mode, backbone and name.
    clicked = time.monotonic()
    page.click("#rerun")
    page.wait_for_url(
        lambda url: bool(re.search(r"/runs/\d+$", url)) and url.split("/")[-1] != str(first_id)
    )
    second_id = int(page.url.rsplit("/", 1)[1])
    # A warm quick run (embeddings cached): the time from the click to the dashboard.
    page.locator("#dashboard .metric-big").wait_for(timeout=TRAINING_TIMEOUT_MS)
    print(f"\nwarm quick run: {time.monotonic() - clicked:.1f} s from click to dashboard")
    second = wait_until_done(page, second_id)
    first = api_call(page, "GET", f"/runs/{first_id}")
    assert (second["mode"], second["backbone"], second["options"], second["name"]) == (
        first["mode"],
        first["backbone"],
        first["options"],
        first["name"],
    )
    # A short fine-tune, so the comparison has curves to overlay.
    tuned = api_call(
        page,
        "POST",
        f"/projects/{project_id}/runs",
        mode="finetune",
        backbone="tf_efficientnet_lite0",
        name="Fine-tuned",
        options={"epochs": 2, "train_layers": "head", "augmentation": "none"},
    )
    tuned = wait_until_done(page, tuned["id"])

    page.goto(f"/projects/{project_id}")
    card = page.locator("#deployed-card")
    expect(card.locator(".deployed-name")).to_have_text("Baseline <b>lite0</b>")
    expect(card.locator("#deployed-endpoint")).to_contain_text(
        f"/api/projects/{project_id}/predict"
    )
    rows = page.locator("#runs-table tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator(f"#runs-table tr[data-run-id='{first_id}'] .deployed-tag")).to_be_visible()
    screenshot(page, "project-deployed-model")

    # The train dialog now knows this server's pace: a time per mode and per backbone; only
    # backbones that can train here are listed first, the rest behind "more".
    measured = api_call(page, "GET", f"/projects/{project_id}/estimates?epochs=10")["backbones"]
    print(f"\nestimates measured on this server: {measured}")
    lite0 = measured.get("tf_efficientnet_lite0", {})
    page.click("#train-button")
    page.locator("#backbone-tf_efficientnet_lite0").wait_for()
    lite0_time = page.locator("#backbone-table .time-here[data-backbone='tf_efficientnet_lite0']")
    if lite0.get("linear_s") is not None:
        expect(page.locator("#estimate-linear")).to_contain_text("about")
        expect(lite0_time).not_to_have_text("not measured")
    else:
        expect(lite0_time).to_have_text("not measured")
    assert page.locator("#backbone-table tr.is-disabled").count() == 0
    page.locator("input[name=mode][value=finetune]").check()
    if lite0.get("finetune_s") is not None:
        expect(page.locator("#estimate-finetune")).to_contain_text("about")
        expect(page.locator("#train-summary")).to_contain_text("on this server")
    screenshot(page, "train-dialog-estimates", full_page=False)
    page.keyboard.press("Escape")

    # Compare the three: pick them, follow the link.
    compare = page.locator("#compare-runs")
    expect(compare).to_have_attribute("aria-disabled", "true")
    for run_id in (first_id, second_id, tuned["id"]):
        page.locator(f"#runs-table tr[data-run-id='{run_id}'] .run-pick").check()
    expect(compare).to_have_text("Compare 3 runs")
    compare.click()
    page.wait_for_url(re.compile(r"/compare\?runs="))
    headline = page.locator("#compare-headline")
    expect(headline.locator("thead th.compare-run")).to_have_count(3)
    expect(headline.locator("tbody tr").first).to_contain_text("95% range")
    expect(page.locator("#compare-per-class tbody tr")).to_have_count(2)
    expect(page.locator("#compare-per-class thead")).to_contain_text("Fine-tuned")
    page.locator(".compare-matrix .main-svg").nth(2).wait_for()
    expect(page.locator("#compare-curves .js-plotly-plot")).to_have_count(2)
    # Both quick runs are named in the note about runs without epochs; the fine-tune is drawn.
    assert page.locator("#compare-curves .scatterlayer .trace").count() >= 2
    expect(page.locator("#compare-curves")).to_contain_text("trained no epochs")
    assert page.locator("#compare-verdict").inner_text().strip()
    screenshot(page, "compare-runs")

    # Delete the repeat: back on the project page, two runs left, its files gone.
    page.goto(f"/runs/{second_id}")
    page.locator("#dashboard .metric-big").wait_for()
    page.click("#delete-run")
    page.get_by_role("button", name="Delete run").click()
    page.wait_for_url(re.compile(rf"/projects/{project_id}$"))
    expect(page.locator("#runs-table tbody tr")).to_have_count(2)
    assert page.request.get(f"/api/runs/{second_id}").status == 404
    assert_no_script_ran(session)
