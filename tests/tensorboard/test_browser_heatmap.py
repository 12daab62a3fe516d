"""The heatmap in headless Chromium: NaN colours, legend, anomaly marks, step axis, run choice."""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tbrun import NAN_STEP, STEPS, Server, start_tensorboard, wait_for
from test_browser import ARGS, CHROMIUM, REPO, _need_chromium

from vizdebug import Writer
from vizdebug.events import TensorStats
from vizdebug.stats import reference_stats

pytestmark = pytest.mark.slow


def _open(page: Any, url: str) -> Any:
    """TensorBoard's page on the vizdebug tab; returns the dashboard's frame."""
    page.goto(f"{url}/#vizdebug", wait_until="domcontentloaded")
    page.wait_for_selector("iframe", timeout=60_000)
    for _ in range(240):
        frame = next((f for f in page.frames if "name=vizdebug" in f.url), None)
        if frame is not None:
            frame.wait_for_selector("#heatmap-labels div", timeout=60_000)
            return frame
        page.wait_for_timeout(250)
    raise AssertionError([f.url for f in page.frames])


def _pixel(frame: Any, row: int, col: int) -> str:
    """The colour in the middle of a heatmap cell, as ``rgb(r,g,b)``."""
    return str(
        frame.evaluate(
            """([r, c]) => {
                const canvas = document.querySelector('#heatmap');
                const w = Number(canvas.dataset.cellW);
                const ctx = canvas.getContext('2d');
                const d = ctx.getImageData(c * w + w / 2, r * 14 + 6, 1, 1).data;
                return `rgb(${d[0]},${d[1]},${d[2]})`;
            }""",
            [row, col],
        )
    )


def _screenshot(page: Any, name: str) -> None:
    artifacts = Path(os.environ.get("VIZDEBUG_ARTIFACTS", REPO / "test-artifacts"))
    if artifacts.is_dir():
        page.screenshot(path=str(artifacts / name), full_page=True)


def _swatch(frame: Any, kind: str) -> str:
    colour = frame.evaluate(
        '(k) => getComputedStyle(document.querySelector(`#legend .swatch[data-kind="${k}"]`))'
        ".backgroundColor",
        kind,
    )
    return str(colour).replace(" ", "")


def test_nan_cells_have_their_colour_legend_marks_and_axis(tensorboard_server: Server) -> None:
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            frame = _open(page, tensorboard_server.url)
            frame.locator("#preset").select_option(label="NaN and Inf count")
            legend_js = "document.querySelector('#legend').textContent"
            frame.wait_for_function(f"{legend_js}.includes('NaN and Inf count of output')")
            # The legend names NaN, +Inf and -Inf, each with its own colour, and the 0 colour.
            legend = frame.locator("#legend").inner_text()
            for text in ("NaN in the tensor", "+Inf in the tensor", "-Inf in the tensor", "0 ("):
                assert text in legend, legend
            nan, zero = _swatch(frame, "nan"), _swatch(frame, "zero")
            colours = {nan, zero, _swatch(frame, "posinf"), _swatch(frame, "neginf")}
            assert len(colours) == 4
            # fc1 (row 1) held 5 NaN at NAN_STEP: the NaN colour, never the colour of 0.
            assert _pixel(frame, 1, NAN_STEP) == nan
            assert _pixel(frame, 1, NAN_STEP - 1) == zero
            assert _pixel(frame, 0, NAN_STEP) == zero
            # The anomaly's cell is marked (fc1's row, the anomaly's step).
            marks = frame.locator(".anomaly-mark")
            assert marks.count() >= 1
            mark = frame.locator(f'.anomaly-mark[data-name="fc1"][data-step="{NAN_STEP}"]')
            assert mark.count() == 1 and mark.get_attribute("data-col") == str(NAN_STEP)
            assert "nan in fc1" in (mark.get_attribute("title") or "")
            # A step axis under the heatmap, from the first step to the last.
            ticks = frame.locator("#step-axis text.tick").all_text_contents()
            assert len(ticks) >= 2 and ticks[0] == "0" and ticks[-1] == str(STEPS - 1)
            assert [int(t) for t in ticks] == sorted(int(t) for t in ticks)
            # The module panel: a dash where a value is undefined, never "latest 0" for NaN.
            frame.locator("#heatmap-labels div", has_text="fc1").click()
            frame.wait_for_selector("#module-latest")
            assert "latest" in frame.locator("#module-latest").inner_text()
            _screenshot(page, "vizdebug-heatmap-nan.png")
        finally:
            browser.close()


def _write_runs(logdir: Path) -> None:
    """An older run with a NaN, then a newer healthy one with a root module and repeated calls."""
    rng = np.random.default_rng(1)
    with Writer(logdir / "a-older") as w:
        for step in range(5):
            w.stats("fc", "grad", reference_stats(rng.normal(size=16)), step=step)
        w.stats("fc", "grad", reference_stats(np.full(16, math.nan)), step=5)
        w.anomaly("nan", step=5, module="fc", phase="backward", role="grad", nan=16)
    with Writer(logdir / "b-newer") as w:
        for step in range(4):
            for name, call in (("", 0), ("0", 0), ("0", 1), ("", 1)):
                stats = reference_stats(rng.normal(size=16))
                w.write(TensorStats(step=step, name=name, role="output", stats=stats, call=call))
            nan_row = np.full(16, math.nan) if step == 3 else rng.normal(size=16)
            w.stats("0.weight", "grad", reference_stats(nan_row), step=step)
        w.anomaly("nan", step=3, module="", module_type="Sequential", phase="forward",
                  role="output", nan=16)  # fmt: skip


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logdir = tmp_path_factory.mktemp("tb-two-runs")
    _write_runs(logdir)
    log = logdir.parent / f"{logdir.name}.log"
    proc, url = start_tensorboard(logdir, log)
    try:
        wait_for(f"{url}/data/plugins_listing", proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_opens_on_the_most_recent_run_and_labels_root_and_calls(two_runs: str) -> None:
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            frame = _open(page, two_runs)
            # "a-older" is first in the list; the tab opens on the run written last.
            assert frame.locator("#run").input_value() == "b-newer"
            frame.locator("#role").select_option("grad")
            frame.wait_for_function(
                "document.querySelector('#heatmap-labels div')?.dataset.name === '0.weight'"
            )
            # The all-NaN gradient's cell is NaN-coloured, its latest value a dash, not 0.
            assert _pixel(frame, 0, 3) == _swatch(frame, "nan")
            frame.locator("#heatmap-labels div").first.click()
            frame.wait_for_selector("#module-latest")
            latest = frame.locator("#module-latest").inner_text()
            assert "latest - (no finite values: 16 NaN)" in latest, latest
            assert frame.locator("#module-series rect.nonfinite-step").count() == 1
            assert "no finite values" in frame.locator("#module-panel").inner_text()
            frame.locator("#role").select_option("output")
            frame.wait_for_function("document.querySelectorAll('#heatmap-labels div').length === 4")
            labels = frame.locator("#heatmap-labels div").all_text_contents()
            assert labels == ["(root)", "0", "0 · call 2", "(root) · call 2"]
            title = frame.locator("#heatmap-labels div").nth(2).get_attribute("title") or ""
            assert "more than once per step" in title
            assert "call 1 is the first" in frame.locator("#legend").inner_text()
            # The root's anomaly: "(root)" in the list, both of the root's rows marked at step 3.
            assert frame.locator("#anomalies tr.anomaly td").nth(2).inner_text() == "(root)"
            marks = frame.locator('.anomaly-mark[data-step="3"]')
            assert sorted(marks.evaluate_all("ms => ms.map(m => m.dataset.name)")) == ["", "#1"]
            _screenshot(page, "vizdebug-heatmap-calls.png")
        finally:
            browser.close()
