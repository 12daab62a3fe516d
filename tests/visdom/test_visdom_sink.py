"""The Visdom sink against a real Visdom server: windows, batching, escaping, entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from visdom_helpers import VisdomServer, traces
from vizdebug_visdom import VisdomSink
from vizdebug_visdom.aggregate import PointBuffer, decimate
from vizdebug_visdom.windows import env_name, structure_html

from vizdebug import Writer
from vizdebug.events import ModelStructure, ModuleInfo, Scalar, Stats
from vizdebug.stats import reference_stats

XSS = "<img src=x onerror=alert(1)>"


def _stats(seed: int) -> Stats:
    return reference_stats(np.random.default_rng(seed).normal(size=200) * (seed + 1))


def test_windows_hold_the_data_and_are_appended_to(
    visdom_server: VisdomServer, tmp_path: Path
) -> None:
    sink = VisdomSink(visdom_server.url, max_points=None)
    modules = ["conv1", "fc"]
    written: dict[tuple[str, str], list[float]] = {}
    with Writer(tmp_path / "run-1", sinks=[sink]) as w:
        w.structure(
            "torch", [ModuleInfo("", "Net"), *(ModuleInfo(m, "Linear", 10) for m in modules)]
        )
        for step in range(20):
            w.scalar("loss", 1.0 / (step + 1), step)
            w.scalar("val/acc", step / 20, step)
            for i, m in enumerate(modules):
                st = _stats(step * 10 + i)
                written.setdefault((m, "l2"), []).append(st.l2)
                w.stats(m, "grad", st, step)
            if step == 9:
                w.anomaly("nan", step=9, module="fc", phase="backward", message="NaN in fc")
                w.flush()
                first = visdom_server.by_title(sink.env or "")
        w.note("data", "shuffled", step=19)
        w.flush()
        env = sink.env
        assert env == "vizdebug_run-1"
        wins = visdom_server.by_title(env)

    # The first flush created the windows; the second appended (ids unchanged, all points).
    assert first["loss"]["id"] == wins["loss"]["id"]
    x, y = traces(wins["loss"])["loss"]
    assert x == list(range(20))
    assert y == pytest.approx([1.0 / (s + 1) for s in range(20)])
    assert traces(wins["val/acc"])["val/acc"][1] == pytest.approx([s / 20 for s in range(20)])
    l2 = traces(wins["grad: L2 norm"])
    assert set(l2) == set(modules)
    for m in modules:
        assert l2[m][0] == list(range(20))
        assert l2[m][1] == pytest.approx(written[(m, "l2")])
    assert {"grad: mean", "grad: std"} <= set(wins)
    # The latest histogram of each module, replaced in place.
    last = _stats(19 * 10 + 1)
    hist = wins["fc: grad histogram (step 19)"]
    assert hist["content"]["data"][0]["type"] == "bar"
    assert hist["content"]["data"][0]["y"] == list(last.hist_counts)
    assert sum(1 for t in wins if t.startswith("fc: grad histogram")) == 1
    assert "NaN in fc" in wins["anomalies"]["content"]
    assert "shuffled" in wins["notes"]["content"]
    assert "conv1" in wins["model"]["content"] and "Linear" in wins["model"]["content"]
    assert "run-1" in wins["run info"]["content"]
    assert sink.status.connected and sink.status.dropped == 0
    # close() saved the environment to the server's env_path
    assert (visdom_server.env_path / f"{env}.json").is_file()


def test_points_are_batched_per_interval(visdom_server: VisdomServer) -> None:
    now = [0.0]
    sink = VisdomSink(visdom_server.url, env="batching", interval=1.0, clock=lambda: now[0])
    sink.write([Scalar(step=0, tag="loss", value=1.0)])  # first write sends at once
    sent = sink.client.requests
    assert traces(visdom_server.by_title("batching")["loss"])["loss"][0] == [0]
    for step in range(1, 40):
        now[0] = step * 0.02
        sink.write([Scalar(step=step, tag="loss", value=float(step))])
    assert sink.client.requests == sent  # nothing sent within the interval
    now[0] = 1.0
    sink.write([Scalar(step=40, tag="loss", value=40.0)])
    assert sink.client.requests == sent + 1  # forty points, one append request
    assert traces(visdom_server.by_title("batching")["loss"])["loss"][0] == list(range(41))
    sink.close()


def test_many_points_are_aggregated(visdom_server: VisdomServer) -> None:
    sink = VisdomSink(visdom_server.url, env="aggregated", max_points=50)
    sink.write([Scalar(step=s, tag="loss", value=float(s)) for s in range(5000)])
    sink.flush()
    x, y = traces(visdom_server.by_title("aggregated")["loss"])["loss"]
    assert len(x) == 50
    assert x[0] == 99 and x[-1] == 4999
    assert y[0] == pytest.approx(49.5)  # the mean of steps 0..99
    sink.close()


def test_decimate_matches_a_reference() -> None:
    xs = [float(i) for i in range(1000)]
    ys = [float(i % 7) for i in range(1000)]
    ys[5] = float("nan")
    dx, dy = decimate(xs, ys, 8)
    ref = [np.nanmean(chunk) for chunk in np.array_split(np.array(ys), 8)]
    assert dx == [c[-1] for c in np.array_split(np.array(xs), 8)]
    assert dy == pytest.approx(ref)
    assert decimate(xs[:5], ys[:5], 8) == (xs[:5], ys[:5])


def test_point_buffer_is_bounded_and_restores_in_order() -> None:
    buf = PointBuffer(3)
    assert all(buf.add("w", "a", i, i) for i in range(3))
    assert not buf.add("w", "a", 3, 3)
    assert buf.dropped == 1 and len(buf) == 3
    taken = buf.take("w")
    assert len(buf) == 0
    buf.add("w", "a", 9, 9)
    buf.restore("w", taken)
    assert buf.take("w") == {"a": ([0, 1, 2, 9], [0, 1, 2, 9])}


def test_html_in_names_is_escaped(visdom_server: VisdomServer, tmp_path: Path) -> None:
    sink = VisdomSink(visdom_server.url, env="xss")
    with Writer(tmp_path / "xss", sinks=[sink]) as w:
        w.structure("torch", [ModuleInfo(XSS, "Evil<script>")])
        w.scalar(XSS, 1.0, 0)
        w.stats(XSS, "output", reference_stats(np.arange(5.0)), 0)
        w.anomaly("nan", step=0, module=XSS, module_type="<b>T</b>", message=XSS)
        w.note(XSS, XSS, 0)
    sent = json.dumps(visdom_server.windows("xss"))
    assert "<img" not in sent and "<script" not in sent and "<b>T" not in sent
    assert "&lt;img src=x onerror=alert(1)&gt;" in sent
    l2 = visdom_server.by_title("xss")["output: L2 norm"]
    assert list(traces(l2)) == ["&lt;img src=x onerror=alert(1)&gt;"]
    html = structure_html(ModelStructure(framework="t", modules=(ModuleInfo("a", "<script>"),)))
    assert "&lt;script&gt;" in html and "<script" not in html


def test_a_hundred_modules_stay_usable(visdom_server: VisdomServer) -> None:
    sink = VisdomSink(
        visdom_server.url, env="big", lines_per_window=20, stats=("l2",), max_histograms=5
    )
    names = [f"layers.{i}" for i in range(120)]
    st = reference_stats(np.arange(10.0))
    with Writer(sinks=[sink]) as w:
        for step in range(3):
            for n in names:
                w.stats(n, "grad", st, step)
                w.scalar(f"update_ratio/{n}", 1e-3, step)
    wins = visdom_server.by_title("big")
    ratio = {t: w for t, w in wins.items() if t.startswith("update_ratio")}
    assert len(ratio) == 6 and "update_ratio (part 6)" in ratio
    assert sorted(n for w in ratio.values() for n in traces(w)) == sorted(names)
    parts = {t: w for t, w in wins.items() if t.startswith("grad: L2 norm")}
    assert len(parts) == 6
    seen: list[str] = []
    for window in parts.values():
        lines = traces(window)
        assert len(lines) == 20
        assert all(x == [0, 1, 2] for x, _ in lines.values())
        seen += lines
    assert sorted(seen) == sorted(names)
    assert sum(1 for t in wins if "histogram" in t) == 5
    assert "capped at 5" in wins["notes"]["content"]


def test_a_window_closed_in_the_browser_comes_back(visdom_server: VisdomServer) -> None:
    sink = VisdomSink(visdom_server.url, env="closing", max_points=None)
    sink.write([Scalar(step=0, tag="loss", value=0.0)])
    sink.flush()
    win = visdom_server.by_title("closing")["loss"]["id"]
    visdom_server.post("/close", {"eid": "closing", "win": win})
    assert "loss" not in visdom_server.by_title("closing")
    for step in (1, 2):
        sink.write([Scalar(step=step, tag="loss", value=float(step))])
        sink.flush()
    sink.flush()
    assert traces(visdom_server.by_title("closing")["loss"])["loss"][0] == [1, 2]
    assert sink.status.request_errors == 1


def test_sinks_argument_and_environment(
    visdom_server: VisdomServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIZDEBUG_VISDOM_SERVER", visdom_server.url)
    with Writer(tmp_path / "by arg", sinks=["visdom"]) as w:
        w.scalar("loss", 0.5, 0)
    monkeypatch.setenv("VIZDEBUG_SINKS", "visdom")
    with Writer(tmp_path / "by/env?var") as w:
        w.scalar("loss", 0.25, 0)
    assert traces(visdom_server.by_title("vizdebug_by-arg")["loss"])["loss"][1] == [0.5]
    assert traces(visdom_server.by_title("vizdebug_env-var")["loss"])["loss"][1] == [0.25]


def test_env_names_are_sanitized() -> None:
    assert env_name("2024-01-01 host/x") == "vizdebug_2024-01-01-host-x"
    assert env_name("run", rank=1, world_size=2) == "vizdebug_run-r1"
    assert env_name("<>") == "vizdebug_run"
    assert len(env_name("x" * 500)) <= 120


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server": "ftp://host"},
        {"interval": -1.0},
        {"stats": ("median",)},
        {"env": " "},
        {"backoff": (0.0, 1.0)},
        {"lines_per_window": 0},
    ],
)
def test_bad_options_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        VisdomSink(**kwargs)
