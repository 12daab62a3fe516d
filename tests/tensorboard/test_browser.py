"""End to end in headless Chromium: TensorBoard's own page opens the vizdebug dashboard."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from tbrun import MODULES, NAN_STEP, XSS, Server

CHROMIUM = Path(os.environ.get("VIZDEBUG_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: run scripts/setup-browser.sh"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)  # CI installs Chromium; its absence there is a failure
    pytest.skip(message)


def test_dashboard_in_chromium(tensorboard_server: Server, tmp_path: Path) -> None:
    _need_chromium()
    from playwright.sync_api import sync_playwright

    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{tensorboard_server.url}/#vizdebug", wait_until="domcontentloaded")
            frame = None
            page.wait_for_selector("iframe", timeout=60_000)
            for _ in range(240):
                frame = next((f for f in page.frames if "name=vizdebug" in f.url), None)
                if frame is not None:
                    break
                page.wait_for_timeout(250)
            assert frame is not None, [f.url for f in page.frames]
            frame.wait_for_selector("#heatmap-labels div", timeout=60_000)
            frame.wait_for_selector("#anomalies tr.anomaly", timeout=60_000)
            frame.locator("#role").select_option("output")
            frame.wait_for_function(
                "document.querySelectorAll('#heatmap-labels div').length === 3"
                " && document.querySelector('#heatmap-labels div').textContent === 'conv1'"
            )
            labels = frame.locator("#heatmap-labels div").all_text_contents()
            assert labels == list(MODULES)
            # The hostile name is text, not an element.
            assert frame.locator("#heatmap-labels img").count() == 0
            assert frame.locator("img").count() == 0
            rows = frame.locator("#anomalies tr.anomaly")
            assert rows.count() == 2
            first = rows.nth(0).locator("td").all_text_contents()
            assert first[0] == str(NAN_STEP) and first[2] == "fc1" and first[3] == "forward"
            assert rows.nth(1).locator("td").nth(2).text_content() == XSS
            rows.nth(0).click()  # linked to the heatmap and the module panel
            frame.wait_for_selector("#module-panel h3", timeout=20_000)
            frame.wait_for_selector("#module-series polyline")
            frame.wait_for_selector("#module-histogram rect")
            assert frame.locator("#module-panel h3").text_content() == "fc1"
            assert frame.locator("#heatmap-labels div.sel").text_content() == "fc1"
            frame.locator("#heatmap-labels div", has_text="onerror").click()
            frame.wait_for_function(
                "document.querySelector('#module-panel h3').textContent.includes('onerror')"
            )
            assert frame.locator("#module-panel h3").text_content() == XSS
            canvas = frame.locator("#heatmap")
            box = canvas.bounding_box()
            assert box is not None and box["width"] > 20 and box["height"] >= 3 * 14
            page.wait_for_timeout(500)
            shot = tmp_path / "vizdebug-dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            artifacts = REPO / "test-artifacts"
            if artifacts.is_dir():
                shutil.copy(shot, artifacts / shot.name)
        finally:
            browser.close()
    assert dialogs == []
