"""A real TensorBoard process over a vizdebug run, read through its HTTP API."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tbrun import MODULES, NAN_STEP, STEPS, Server, start_tensorboard, wait_for


def _json(server: Server | str, path: str, **params: Any) -> Any:
    url = f"{server if isinstance(server, str) else server.url}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _eventually(server: Server | str, path: str, ready: Any, **params: Any) -> Any:
    # TensorBoard loads event files in the background after it starts answering.
    deadline = time.monotonic() + 60
    while True:
        try:
            body = _json(server, path, **params)
        except urllib.error.HTTPError:
            body = None
        if body is not None and ready(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} {params} never got ready; last answer {body!r}")
        time.sleep(0.5)


def test_plugins_listing_shows_vizdebug_active(tensorboard_server: Server) -> None:
    listing = _eventually(
        tensorboard_server,
        "/data/plugins_listing",
        lambda b: b.get("vizdebug", {}).get("enabled"),
    )
    entry = listing["vizdebug"]["loading_mechanism"]
    assert entry["type"] == "IFRAME" and entry["module_path"].endswith("/static/index.js")
    assert listing["scalars"]["enabled"] and listing["histograms"]["enabled"]
    assert listing["text"]["enabled"]


def test_scalars_route_returns_the_gradient_norms(tensorboard_server: Server) -> None:
    fixture = tensorboard_server.fixture
    body = _eventually(
        tensorboard_server,
        "/data/plugin/scalars/scalars",
        lambda b: len(b) >= STEPS,
        run=fixture.run,
        tag="grad_norm/fc1.weight",
    )
    # Only rank 0 writes native copies (TensorBoard merges the ranks' files of a directory).
    assert [int(step) for _wall, step, _v in body] == list(range(STEPS))
    for _wall, step, value in body:
        assert value == pytest.approx(fixture.grad_l2[("fc1.weight", int(step))], rel=1e-6)
    loss = _json(tensorboard_server, "/data/plugin/scalars/scalars", run=fixture.run, tag="loss")
    assert {int(s) for _w, s, _v in loss} == set(range(STEPS))


def test_histograms_route_returns_the_buckets(tensorboard_server: Server) -> None:
    fixture = tensorboard_server.fixture
    body = _eventually(
        tensorboard_server,
        "/data/plugin/histograms/histograms",
        lambda b: len(b) >= STEPS,
        run=fixture.run,
        tag="gradients/conv1.weight",
    )
    steps = {int(step) for _wall, step, _buckets in body}
    assert steps == set(range(STEPS))
    for _wall, _step, buckets in body:
        assert sum(c for _lo, _hi, c in buckets) == pytest.approx(64)


def test_text_route_shows_the_anomalies(tensorboard_server: Server) -> None:
    fixture = tensorboard_server.fixture
    body = _eventually(
        tensorboard_server,
        "/data/plugin/text/text",
        lambda b: len(b) >= 1,
        run=fixture.run,
        tag="anomalies",
    )
    assert any(e["step"] == NAN_STEP and "fc1 produced 5 NaN" in e["text"] for e in body)


def test_vizdebug_routes_through_the_server(tensorboard_server: Server) -> None:
    fixture = tensorboard_server.fixture
    runs = _eventually(tensorboard_server, "/data/plugin/vizdebug/runs", lambda b: b["runs"])
    (run,) = runs["runs"]
    assert run["name"] == fixture.run and run["ranks"] == [0, 1] and run["complete"]
    heat = _json(
        tensorboard_server, "/data/plugin/vizdebug/heatmap", run=fixture.run, role="output"
    )
    assert heat["names"] == list(MODULES) and heat["last_step"] == STEPS - 1
    try:
        _json(tensorboard_server, "/data/plugin/vizdebug/heatmap", run=fixture.run, stat="?")
    except urllib.error.HTTPError as exc:
        assert exc.code == 400
        assert "stat must be one of" in json.loads(exc.read())["error"]
    else:
        raise AssertionError("a bad statistic was accepted")
    for bad in ("/static/../plugin.py", "/static/%2e%2e/plugin.py"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{tensorboard_server.url}/data/plugin/vizdebug{bad}")
        assert err.value.code in (400, 404)


def test_text_dashboard_shows_one_anomaly_text_per_step_origin_first(tmp_path: Path) -> None:
    # TensorBoard keeps one text per tag and step: anomalies of one step written in two batches
    # (the origin in the forward pass, the optimizer's finding later) must both be in it.
    import numpy as np

    from vizdebug import Writer
    from vizdebug.stats import reference_stats

    with Writer(tmp_path / "logs" / "run") as w:
        w.stats("m", "output", reference_stats(np.ones(4)), step=289)
        w.anomaly("nan", step=290, module="6", phase="forward", role="output", nan=3,
                  message="origin in module 6")  # fmt: skip
        w.flush()
        w.anomaly("nan", step=290, module="0", phase="optimizer", role="weight", nan=9,
                  message="module 0 after the update")  # fmt: skip
    proc, url = start_tensorboard(tmp_path / "logs", tmp_path / "tb.log")
    try:
        wait_for(f"{url}/data/plugins_listing", proc, tmp_path / "tb.log")
        texts = _eventually(
            url, "/data/plugin/text/text", lambda b: len(b) >= 1, run="run", tag="anomalies"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert [t["step"] for t in texts] == [290]
    html = texts[0]["text"]
    assert html.index("origin in module 6") < html.index("module 0 after the update")
