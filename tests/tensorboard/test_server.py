"""A real TensorBoard process over a vizdebug run, read through its HTTP API."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from tbrun import MODULES, NAN_STEP, STEPS, Server


def _json(server: Server, path: str, **params: Any) -> Any:
    url = f"{server.url}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _eventually(server: Server, path: str, ready: Any, **params: Any) -> Any:
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
