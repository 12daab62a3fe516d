"""Visdom's own page in headless Chromium: a server started offline shows vizdebug's windows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from visdom_helpers import VisdomServer
from vizdebug_visdom import VisdomSink
from vizdebug_visdom.server import missing_files, static_dir

from vizdebug import Writer
from vizdebug.events import ModelStructure, ModuleInfo
from vizdebug.stats import reference_stats

REPO = Path(__file__).resolve().parents[2]
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
XSS = "<img src=x onerror=alert(1)>"


def _need(ok: bool, message: str) -> None:
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)  # CI sets both up; their absence there is a failure
    pytest.skip(message)


@pytest.fixture(scope="module")
def page_files() -> Path:
    """Visdom's page files, fetched from the npm registry once (scripts/setup-visdom-static.sh)."""
    _need(CHROMIUM.exists(), f"{CHROMIUM} is missing: run scripts/setup-browser.sh")
    root = static_dir()
    if missing_files(root):
        _need(shutil.which("npm") is not None, "npm is missing: Visdom's page files come from npm")
        env = dict(os.environ, VIZDEBUG_PYTHON=sys.executable)
        script = REPO / "scripts" / "setup-visdom-static.sh"
        done = subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=600)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert missing_files(root) == []
    return root


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, _remote, state = line.split()[1:4]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_server_listens_on_loopback_only(visdom_server: VisdomServer) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp here")
    # 0100007F is 127.0.0.1 in /proc's byte order; 00000000 would be every interface
    assert _listening_addresses(visdom_server.port) == {"0100007F"}


def test_vizdebug_windows_render_in_chromium(
    page_files: Path, visdom_server: VisdomServer, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    sink = VisdomSink(visdom_server.url, max_points=None)
    rng = np.random.default_rng(0)
    with Writer(tmp_path / "run-b", sinks=[sink]) as w:
        w.write(
            ModelStructure(
                step=0, framework="torch", modules=(ModuleInfo("", "Net"), ModuleInfo(XSS, "Evil"))
            )
        )
        for step in range(12):
            w.scalar("loss", 1.0 / (step + 1), step)
            w.stats("fc.weight", "grad", reference_stats(rng.normal(size=64)), step)
        w.anomaly("nan", step=11, module=XSS, phase="forward", role="output", message=f"{XSS} NaN")
        w.flush()
    env = sink.env
    assert env is not None

    dialogs: list[str] = []
    failed: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("requestfailed", lambda r: failed.append(r.url))
            response = page.goto(f"{visdom_server.url}/env/{env}", wait_until="load")
            assert response is not None and response.status == 200
            # Plotly drew the line windows (loss, the gradient norms): SVG paths with data.
            traces = "document.querySelectorAll('.js-plotly-plot .scatterlayer .trace path')"
            page.wait_for_function(f"{traces}.length >= 2", timeout=60_000)
            titles = page.locator(".window .bar").all_text_contents()
            assert any("loss" in t for t in titles), titles
            assert any("anomalies" in t.lower() for t in titles), titles
            page.wait_for_function(
                "[...document.querySelectorAll('.window')].some(w => w.textContent.includes('NaN'))"
            )
            body = page.locator("body").inner_text()
            assert XSS in body  # the hostile name is shown as text ...
            assert page.locator("img").count() == 0  # ... never as an element
            shot = tmp_path / "visdom-page.png"
            page.screenshot(path=str(shot), full_page=True)
            artifacts = Path(os.environ.get("VIZDEBUG_ARTIFACTS", REPO / "test-artifacts"))
            if artifacts.is_dir():
                shutil.copy(shot, artifacts / shot.name)
        finally:
            browser.close()
    assert dialogs == []
    # every script the page needs loaded (MathJax, for LaTeX in text windows, is left out)
    assert [u for u in failed if "mathjax" not in u] == []
