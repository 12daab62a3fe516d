"""The plugin's routes through werkzeug's test client, over TensorBoard's own data provider."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tbrun import MODULES, NAN_STEP, STEPS, XSS, Fixture, write_run
from tensorboard.backend.event_processing import data_ingester as ingester
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from vizdebug_tensorboard.plugin import VizdebugLoader, VizdebugPlugin
from werkzeug.test import Client

PREFIX = "/data/plugin/vizdebug"


def _plugin(logdir: Path, *, files: bool = True, samples: int | None = None) -> VizdebugPlugin:
    guidance = {"vizdebug": samples} if samples is not None else {}
    mux = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=ingester.DEFAULT_SIZE_GUIDANCE,  # as `tensorboard` itself: 10 tensors
        tensor_size_guidance={**ingester.DEFAULT_TENSOR_SIZE_GUIDANCE, **guidance},
    )
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    context = base_plugin.TBContext(
        logdir=str(logdir) if files else None,
        multiplexer=mux,
        data_provider=data_provider.MultiplexerDataProvider(mux, str(logdir)),
        sampling_hints=guidance,
    )
    plugin = VizdebugLoader().load(context)
    assert isinstance(plugin, VizdebugPlugin)
    return plugin


def _strict(text: str) -> Any:
    def no_constant(name: str) -> Any:
        raise ValueError(f"JSON holds {name}")

    return json.loads(text, parse_constant=no_constant)


def _get(plugin: VizdebugPlugin, route: str, code: int = 200, **params: Any) -> Any:
    app = plugin.get_plugin_apps()[route]
    response = Client(app).get(PREFIX + route, query_string=params)
    assert response.status_code == code, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return _strict(response.get_data(as_text=True))


@pytest.fixture(scope="module")
def plugin(run_fixture: Fixture) -> VizdebugPlugin:
    return _plugin(run_fixture.logdir)


def test_runs_lists_ranks_roles_and_anomalies(plugin: VizdebugPlugin) -> None:
    body = _get(plugin, "/runs")
    (run,) = body["runs"]
    assert run["name"] == "demo" and run["ranks"] == [0, 1]
    assert run["roles"] == ["output", "grad", "weight", "update"]
    assert run["last_step"] == STEPS - 1 and run["anomalies"] == 2
    assert run["source"] == "files" and run["complete"] is True
    assert "update_ratio" in body["stats"]


def test_heatmap_holds_the_gradient_norms(plugin: VizdebugPlugin, run_fixture: Fixture) -> None:
    body = _get(plugin, "/heatmap", run="demo", rank=0, role="grad", stat="l2")
    names = [f"{m}.weight" for m in MODULES]
    assert body["names"] == names
    assert body["steps"] == list(range(STEPS))
    for r, name in enumerate(names):
        for step in range(STEPS):
            want = run_fixture.grad_l2[(name, step)]
            assert body["values"][r][step] == pytest.approx(want, rel=1e-6)


def test_heatmap_columns_share_steps_and_keep_the_worst(plugin: VizdebugPlugin) -> None:
    body = _get(plugin, "/heatmap", run="demo", role="output", stat="nan", max_cols=3)
    assert body["steps"] == [0, 10, 20]
    assert body["values"][1] == [0.0, 5.0, 0.0]  # fc1's NaN at step 17 shows in column 2
    ratio = _get(plugin, "/heatmap", run="demo", stat="update_ratio")
    assert all(v == pytest.approx(0.1, rel=1e-6) for row in ratio["values"] for v in row)


def test_anomalies_in_step_order(plugin: VizdebugPlugin) -> None:
    body = _get(plugin, "/anomalies", run="demo", rank=0)
    assert body["total"] == 2
    first, second = body["anomalies"]
    assert (first["step"], first["module"], first["phase"]) == (NAN_STEP, "fc1", "forward")
    assert (second["module"], second["posinf"]) == (XSS, 1)
    assert _get(plugin, "/anomalies", run="demo", rank=1)["total"] == 0


def test_module_panel_series_and_histogram(plugin: VizdebugPlugin) -> None:
    body = _get(plugin, "/module", run="demo", name="fc1", role="output")
    assert body["roles"] == ["output"]
    assert body["steps"] == list(range(STEPS))
    assert body["series"]["nan"][NAN_STEP] == 5
    assert body["histogram"]["step"] == STEPS - 1
    assert len(body["histogram"]["edges"]) == len(body["histogram"]["counts"]) + 1
    assert sum(body["histogram"]["counts"]) == 256
    thin = _get(plugin, "/module", run="demo", name=f"{XSS}.weight", role="grad", max_points=5)
    assert len(thin["steps"]) <= 6 and thin["steps"][-1] == STEPS - 1


def test_nan_and_inf_become_json_safe(tmp_path: Path) -> None:
    from vizdebug import Writer
    from vizdebug.stats import reference_stats

    with Writer(tmp_path / "nan") as w:
        w.stats("dead", "output", reference_stats([float("nan")] * 4), step=0)
        w.stats("hot", "output", reference_stats([float("inf"), 1.0]), step=0)
    plugin = _plugin(tmp_path)
    body = _get(plugin, "/heatmap", run="nan", role="output", stat="mean")
    assert body["values"] == [[None], [1.0]]
    zf = _get(plugin, "/module", run="nan", name="dead", role="output")
    assert zf["series"]["mean"] == [None] and zf["series"]["nan"] == [4.0]


@pytest.mark.parametrize(
    ("route", "params", "message"),
    [
        ("/heatmap", {}, "run is required"),
        ("/heatmap", {"run": "nope"}, "no run 'nope'"),
        ("/heatmap", {"run": "demo", "stat": "bogus"}, "stat must be one of"),
        ("/heatmap", {"run": "demo", "role": "x"}, "role must be one of"),
        ("/heatmap", {"run": "demo", "max_cols": "ten"}, "max_cols must be a whole number"),
        ("/heatmap", {"run": "demo", "max_cols": "0"}, "between 1 and"),
        ("/heatmap", {"run": "demo", "rank": "7"}, "has no rank 7"),
        ("/anomalies", {"run": "demo", "limit": "-1"}, "limit must be between"),
        ("/module", {"run": "demo"}, "name is required"),
        ("/module", {"run": "demo", "name": "fc9", "role": "grad"}, "no grad statistics"),
    ],
)
def test_bad_queries_get_400(
    plugin: VizdebugPlugin, route: str, params: dict[str, str], message: str
) -> None:
    body = _get(plugin, route, 400, **params)
    assert message in body["error"]


def test_static_serves_the_module_and_refuses_traversal(plugin: VizdebugPlugin) -> None:
    client = Client(plugin.get_plugin_apps()["/static/*"])
    ok = client.get(PREFIX + "/static/index.js")
    assert ok.status_code == 200 and ok.mimetype == "text/javascript"
    assert b"export async function render()" in ok.get_data()
    for module in ("dom.js", "heatmap.js", "charts.js"):  # what index.js imports
        assert f"from './{module}'".encode() in ok.get_data()
        part = client.get(PREFIX + f"/static/{module}")
        assert part.status_code == 200 and part.mimetype == "text/javascript"
    for bad in (
        "/static/../plugin.py",
        "/static/%2e%2e/plugin.py",
        "/static/..%2fplugin.py",
        "/static//etc/passwd",
        "/static/",
        "/static/./index.js",
        "/static/nothere.js",
    ):
        response = client.get(PREFIX + bad)
        assert response.status_code == 404, bad
        assert b"import" not in response.get_data()
    meta = plugin.frontend_metadata()
    assert meta.es_module_path == "/static/index.js"


def test_provider_fallback_when_files_are_out_of_reach(tmp_path: Path) -> None:
    write_run(tmp_path, ranks=1)
    sampled = _plugin(tmp_path, files=False)  # TensorBoard's default: 10 samples per tag
    (run,) = _get(sampled, "/runs")["runs"]
    assert (run["source"], run["complete"]) == ("provider", False)
    body = _get(sampled, "/heatmap", run="demo", role="grad")
    assert 0 < len(body["steps"]) <= 10 and body["last_step"] == STEPS - 1
    complete = _plugin(tmp_path, files=False, samples=0)  # --samples_per_plugin vizdebug=0
    (run,) = _get(complete, "/runs")["runs"]
    assert (run["source"], run["complete"]) == ("provider", True)
    assert _get(complete, "/heatmap", run="demo", role="grad")["steps"] == list(range(STEPS))
    assert _get(complete, "/anomalies", run="demo")["total"] == 2


def test_new_steps_appear_on_refresh(tmp_path: Path) -> None:
    from vizdebug import Writer
    from vizdebug.stats import reference_stats

    w = Writer(tmp_path / "live", flush_secs=0.1)
    w.stats("a", "grad", reference_stats([1.0, 2.0]), step=0)
    w.flush()
    plugin = _plugin(tmp_path)
    store = plugin._store
    now = [0.0]
    store.clock = lambda: now[0]
    assert _get(plugin, "/heatmap", run="live")["steps"] == [0]
    w.stats("a", "grad", reference_stats([1.0, 3.0]), step=1)
    w.close()
    assert _get(plugin, "/heatmap", run="live")["steps"] == [0]  # cached for a second
    now[0] = 5.0
    assert _get(plugin, "/heatmap", run="live")["steps"] == [0, 1]


def test_no_finite_values_are_nan_never_zero_and_cells_carry_flags(tmp_path: Path) -> None:
    from vizdebug_tensorboard.data import FLAGS

    from vizdebug import Writer
    from vizdebug.stats import reference_stats

    nan = float("nan")
    with Writer(tmp_path / "nan") as w:
        for step in range(3):
            grad = [nan] * 8 if step == 2 else [1.0] * 4  # l2 of the row is 0 at step 2
            w.stats("w", "grad", reference_stats(grad), step=step)
            w.stats("w", "weight", reference_stats([2.0] * 4), step=step)
            w.stats("w", "update", reference_stats([nan, nan] if step == 2 else [0.2] * 4), step)
            if step != 1:  # "v" is not recorded at step 1
                one_nan = [1.0, nan] if step == 2 else [1.0, 0.0]
                w.stats("v", "grad", reference_stats(one_nan), step=step)
        w.stats("u", "grad", reference_stats([float("-inf"), 1.0]), step=0)
    plugin = _plugin(tmp_path)
    module = _get(plugin, "/module", run="nan", name="w", role="grad")
    assert module["series"]["l2"] == [2.0, 2.0, None]  # the module panel shows "-", never 0
    assert module["series"]["max"][2] is None and module["series"]["nan"][2] == 8
    heat = _get(plugin, "/heatmap", run="nan", role="grad", stat="l2")
    assert heat["names"] == ["w", "v", "u"] and heat["flag_bits"] == FLAGS
    assert heat["values"][0] == [2.0, 2.0, None]
    rec, nan_bit, no_finite = FLAGS["recorded"], FLAGS["nan"], FLAGS["no_finite"]
    assert heat["flags"][0] == [rec, rec, rec | nan_bit | no_finite]
    assert heat["flags"][1] == [rec, 0, rec | nan_bit]  # one NaN among finite values
    assert heat["flags"][2][0] == rec | FLAGS["neginf"]
    counts = _get(plugin, "/heatmap", run="nan", role="grad", stat="nonfinite")
    assert counts["values"][1] == [0.0, None, 1.0]
    ratio = _get(plugin, "/heatmap", run="nan", stat="update_ratio")
    assert ratio["values"][0][:2] == [pytest.approx(0.1)] * 2 and ratio["values"][0][2] is None


def test_runs_say_when_each_was_last_written(tmp_path: Path) -> None:
    from vizdebug import Writer
    from vizdebug.stats import reference_stats

    for name in ("old", "new"):  # written one after the other: "new" is the most recent
        with Writer(tmp_path / name) as w:
            w.stats("m", "output", reference_stats([1.0]), step=0)
    runs = {r["name"]: r["last_wall_time"] for r in _get(_plugin(tmp_path), "/runs")["runs"]}
    assert set(runs) == {"old", "new"} and runs["new"] >= runs["old"] > 0


def test_statistics_a_tfdbg_import_lacks_are_missing_not_zero(tmp_path: Path) -> None:
    # vizdebug import-tfdbg writes FULL_HEALTH rows: counts, but NaN moments and no histogram.
    from vizdebug_tensorboard.data import FLAGS

    from vizdebug import Writer
    from vizdebug.stats import HIST_BINS, Stats

    nan = float("nan")
    health = Stats(
        numel=8, dtype="float32", shape=(-1,), nan=0, posinf=0, neginf=0, zeros=2,
        min=nan, max=nan, mean=nan, std=nan, l2=nan, hist_lo=0.0, hist_hi=0.0,
        hist_counts=(0,) * HIST_BINS,
    )  # fmt: skip
    with Writer(tmp_path / "tfdbg") as w:
        w.stats("dense/MatMul:0", "output", health, step=0)
    plugin = _plugin(tmp_path)
    module = _get(plugin, "/module", run="tfdbg", name="dense/MatMul:0", role="output")
    assert module["series"]["l2"] == [None] and module["series"]["mean"] == [None]
    assert module["series"]["zero_fraction"] == [0.25]
    heat = _get(plugin, "/heatmap", run="tfdbg", role="output", stat="std")
    assert heat["values"] == [[None]] and heat["flags"] == [[FLAGS["recorded"]]]  # "no value"
