"""A Visdom server that is down at start, dies mid-run or hangs never breaks training."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from visdom_helpers import VisdomServer, free_port, traces
from vizdebug_visdom import VisdomSink

from vizdebug import Writer
from vizdebug.events import Scalar
from vizdebug.stats import reference_stats


def _wait(writer: Writer, done: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        writer.flush()
        if done():
            return True
        time.sleep(0.1)
    return False


def _loss_steps(server: VisdomServer, env: str) -> list[int]:
    window = server.by_title(env).get("loss")
    return list(traces(window)["loss"][0]) if window else []


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "vizdebug" and r.levelno >= logging.WARNING
    ]


def test_server_killed_mid_run_and_restarted(
    visdom_server: VisdomServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vizdebug")
    sink = VisdomSink(visdom_server.url, max_points=None, backoff=(0.05, 0.2), timeout=1.0)
    st = reference_stats(np.linspace(-1, 1, 64))
    with Writer(tmp_path / "outage", sinks=[sink], flush_secs=0.2) as w:
        env = "vizdebug_outage"
        for step in range(30):
            w.scalar("loss", 1.0 / (step + 1), step)
            w.stats("fc", "grad", st, step)
        assert _wait(w, lambda: len(_loss_steps(visdom_server, env)) == 30)

        visdom_server.stop()
        for step in range(30, 60):  # the server is away: training goes on
            w.scalar("loss", 1.0 / (step + 1), step)
            w.stats("fc", "grad", st, step)
            if step % 10 == 0:
                w.flush()
        assert not sink.status.connected

        visdom_server.start()  # same port, empty state
        for step in range(60, 90):
            w.scalar("loss", 1.0 / (step + 1), step)
            w.stats("fc", "grad", st, step)
        assert _wait(w, lambda: 89 in _loss_steps(visdom_server, env))
    steps = _loss_steps(visdom_server, env)
    # Caught up from the buffer: everything written while the server was away, and after.
    assert steps == list(range(30, 90))
    grads = traces(visdom_server.by_title(env)["grad: L2 norm"])["fc"][0]
    assert grads == list(range(30, 90))
    assert "anomalies" in visdom_server.by_title(env)  # the log pane was recreated
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert visdom_server.url in warnings[0] and "training goes on" in warnings[0]
    assert any("is back" in r.getMessage() for r in caplog.records)
    status = sink.status
    assert status.outages == 1 and status.dropped == 0 and status.pending == 0


def test_server_down_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = VisdomServer(free_port(), tmp_path / "envs", tmp_path / "visdom.log")
    sink = VisdomSink(server.url, max_points=None, backoff=(0.05, 0.2), max_buffer=1000)
    try:
        with Writer(tmp_path / "late", sinks=[sink], flush_secs=0.2) as w:
            for step in range(20):
                w.scalar("loss", float(step), step)
                w.flush()
            assert sink.status.outages == 1 and sink.status.pending == 20
            server.start()
            for step in range(20, 25):
                w.scalar("loss", float(step), step)
            assert _wait(w, lambda: 24 in _loss_steps(server, "vizdebug_late"))
        assert _loss_steps(server, "vizdebug_late") == list(range(25))
    finally:
        server.stop()
    assert len(_warnings(caplog)) == 1


def test_overflow_is_counted_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = VisdomServer(free_port(), tmp_path / "envs", tmp_path / "visdom.log")
    sink = VisdomSink(
        server.url, env="overflow", max_buffer=100, max_points=None, backoff=(0.05, 0.1)
    )
    try:
        sink.write([Scalar(step=s, tag="loss", value=1.0) for s in range(300)])
        sink.flush()
        assert sink.dropped == 200 and sink.status.dropped == 200
        server.start()
        time.sleep(0.15)  # the retry pause
        sink.flush()
        assert sink.status.connected and sink.status.pending == 0
        sink.close()
    finally:
        server.stop()
    messages = _warnings(caplog)
    assert any("is back" in m and "200 dropped" in m for m in messages), messages


def test_a_full_buffer_averages_before_it_drops(tmp_path: Path) -> None:
    server = VisdomServer(free_port(), tmp_path / "envs", tmp_path / "visdom.log")
    sink = VisdomSink(server.url, env="compact", max_buffer=100, max_points=10, backoff=(0.05, 0.1))
    try:
        sink.write([Scalar(step=s, tag="loss", value=float(s)) for s in range(1000)])
        sink.flush()
        assert sink.dropped == 0 and sink.status.compacted > 0
        server.start()
        time.sleep(0.15)
        sink.flush()
        x, y = traces(server.by_title("compact")["loss"])["loss"]
        sink.close()
    finally:
        server.stop()
    # The whole run is covered, at lower resolution; averages stay within their steps.
    assert len(x) <= 10 and x[-1] == 999
    assert all(0 <= v <= 999 for v in y)


def test_a_hanging_server_costs_at_most_the_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A socket that listens but never answers: connect succeeds, the reply never comes.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        sink = VisdomSink(url, timeout=0.3, backoff=(10.0, 10.0))
        with Writer(tmp_path / "hang", sinks=[sink]) as w:
            for step in range(200):
                w.scalar("loss", float(step), step)
            w.flush(timeout=10)
        assert sink.status.outages == 1 and "timed out" in sink.status.last_error
    assert len(_warnings(caplog)) >= 1  # the outage (and the unsent points at close)
