"""Native summaries for TensorBoard's own dashboards, read back with TensorBoard's loader."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tbrun import MODULES, NAN_STEP, STEPS, XSS, Fixture
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import graph_pb2, node_def_pb2

from vizdebug import Writer
from vizdebug.batch import StatsBlock
from vizdebug.runs import load_run
from vizdebug.runs.codec import file_version_event
from vizdebug.runs.native import Graph, NativeConfig, NativeEncoder
from vizdebug.runs.records import encode_records
from vizdebug.runs.store import EventFileSink
from vizdebug.stats import reference_stats, stats_to_row


def _read_back(run_dir: Path, records: list[bytes]) -> event_accumulator.EventAccumulator:
    """Write native records into an event file of their own and load it as TensorBoard does."""
    run_dir.mkdir()
    data = encode_records([file_version_event(1.0), *records])
    (run_dir / "events.out.tfevents.1.test").write_bytes(data)
    return _accumulator(run_dir)


def _accumulator(path: Path) -> event_accumulator.EventAccumulator:
    acc = event_accumulator.EventAccumulator(
        str(path), size_guidance={event_accumulator.TENSORS: 0, event_accumulator.HISTOGRAMS: 0}
    )
    acc.Reload()
    return acc


def _rank0(run_fixture: Fixture, tmp_path: Path) -> Path:
    # TensorBoard merges a directory's files; look at rank 0's file alone.
    src = next((run_fixture.logdir / run_fixture.run).glob("*vizdebug-r0"))
    dst = tmp_path / "r0"
    dst.mkdir()
    (dst / src.name).write_bytes(src.read_bytes())
    return dst


def test_native_scalars_histograms_and_text(run_fixture: Fixture, tmp_path: Path) -> None:
    acc = _accumulator(_rank0(run_fixture, tmp_path))
    tags = acc.Tags()
    for module in MODULES:
        assert f"grad_norm/{module}.weight" in tags["scalars"]
        assert f"update_ratio/{module}.weight" in tags["scalars"]
        assert f"activations/{module}" in tags["histograms"]
        assert f"gradients/{module}.weight" in tags["histograms"]
        assert f"weights/{module}.weight" in tags["histograms"]
    assert "loss" in tags["scalars"]
    assert {"anomalies", "run_info"} <= set(tags["tensors"])

    norms = acc.Scalars("grad_norm/fc1.weight")
    assert [e.step for e in norms] == list(range(STEPS))
    for e in norms:
        assert e.value == pytest.approx(run_fixture.grad_l2[("fc1.weight", e.step)], rel=1e-6)

    histos = acc.Histograms("gradients/conv1.weight")
    assert len(histos) == STEPS
    h = histos[5].histogram_value
    assert tuple(int(c) for c in h.bucket) == run_fixture.grad_hist[("conv1.weight", 5)]
    assert h.num == 64

    text = acc.Tensors("anomalies")
    assert [t.step for t in text] == [NAN_STEP, NAN_STEP + 3]
    first = text[0].tensor_proto.string_val[0].decode()
    assert "fc1 produced 5 NaN" in first and "| forward |" in first
    assert XSS in text[1].tensor_proto.string_val[0].decode()
    info = acc.Tensors("run_info")[0].tensor_proto.string_val[0].decode()
    assert "| framework | torch |" in info


def test_reader_does_not_count_native_copies(run_fixture: Fixture) -> None:
    run = load_run(run_fixture.logdir / run_fixture.run)
    assert not run.histograms  # the native histograms are copies of the packed statistics
    assert not any(tag.startswith("grad_norm/") for tag in run.scalars)
    assert len(run.anomalies) == 2
    assert len(run.stats) == 2 * STEPS * len(MODULES) * 4
    assert len(run.scalars["loss"]) == 2 * STEPS


def test_caps_keep_the_tag_count_bounded(tmp_path: Path) -> None:
    sink = EventFileSink(
        tmp_path, native=NativeConfig(max_histogram_names=2, max_scalar_names=3, include=("m*",))
    )
    stats = reference_stats(np.arange(10.0))
    from vizdebug.events import TensorStats

    events = [
        TensorStats(step=s, name=f"{p}{i}", role=role, stats=stats)
        for s in range(3)
        for p in ("m", "x")
        for i in range(10)
        for role in ("output", "grad")
    ]
    sink.write(events)
    sink.close()
    tags = _accumulator(tmp_path).Tags()
    assert sorted(tags["histograms"]) == [
        "activations/m0",
        "activations/m1",
        "gradients/m0",
        "gradients/m1",
    ]
    assert sorted(tags["scalars"]) == ["grad_norm/m0", "grad_norm/m1", "grad_norm/m2"]


def test_nonfinite_only_tensor_has_no_histogram(tmp_path: Path) -> None:
    with Writer(tmp_path / "r") as w:
        w.stats("a", "output", reference_stats([math.nan, math.inf]), step=0)
        w.stats("b", "output", reference_stats([1.0, math.nan]), step=0)
    tags = _accumulator(tmp_path / "r").Tags()
    assert tags["histograms"] == ["activations/b"]


def test_graph_event_reaches_the_graphs_dashboard(tmp_path: Path) -> None:
    graph = graph_pb2.GraphDef(
        node=[node_def_pb2.NodeDef(name="dense/MatMul", op="MatMul", input=["x", "w"])]
    )
    with Writer(tmp_path / "r") as w:
        w.write(Graph(step=0, graph_def=graph.SerializeToString()))
        w.scalar("loss", 1.0, step=0)
    acc = _accumulator(tmp_path / "r")
    assert acc.Tags()["graph"]
    assert [n.name for n in acc.Graph().node] == ["dense/MatMul"]
    assert list(load_run(tmp_path / "r").scalars) == ["loss"]


def test_disabled_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIZDEBUG_TB_NATIVE", "0")
    with Writer(tmp_path / "r") as w:
        w.stats("a", "grad", reference_stats([1.0, 2.0]), step=0)
    tags = _accumulator(tmp_path / "r").Tags()
    assert tags["histograms"] == [] and tags["scalars"] == []


def test_config_from_env_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="VIZDEBUG_TB_HISTOGRAMS must be a whole number"):
        NativeConfig.from_env({"VIZDEBUG_TB_HISTOGRAMS": "many"})
    cfg = NativeConfig.from_env({"VIZDEBUG_TB_SCALARS": "7", "VIZDEBUG_TB_INCLUDE": "a*, b"})
    assert cfg.max_scalar_names == 7 and cfg.include == ("a*", "b")
    with pytest.raises(ValueError, match="unknown histogram roles"):
        NativeConfig(histogram_roles=("bias",))


def test_encoder_leaves_update_ratio_to_the_adapter() -> None:
    from vizdebug.events import TensorStats

    stats = reference_stats(np.ones(4))
    events: list[object] = [
        TensorStats(step=0, name="w", role="weight", stats=stats),
        TensorStats(step=0, name="w", role="update", stats=stats),
    ]
    from tensorboard.compat.proto import event_pb2

    def tags(records: list[bytes]) -> set[str]:
        return {v.tag for r in records for v in event_pb2.Event.FromString(r).summary.value}

    assert "update_ratio/w" in tags(NativeEncoder(NativeConfig()).encode(events))
    with_adapter = [*events, ("update_ratio/w", 1.0, 0, 0.0)]
    assert "update_ratio/w" not in tags(NativeEncoder(NativeConfig()).encode(with_adapter))


def test_hand_encoded_histograms_read_back_as_tensorboard_protos(tmp_path: Path) -> None:
    # Histograms are encoded by hand from packed rows (a block, or single events packed);
    # TensorBoard's own loader must read what the protobuf runtime would have written,
    # NaN rows and degenerate ones included.
    arrays = [np.random.default_rng(0).normal(size=500), np.ones(7), [math.nan, 1.0, 2.0]]
    roles = ["output", "grad", "weight"]
    stats = [reference_stats(a) for a in arrays]
    rows = tuple(
        (f"m{i}", role, 0, "float64", (len(a),))
        for i, (a, role) in enumerate(zip(arrays, roles, strict=True))
    )
    block = StatsBlock(3, 1.5, "r", 0, rows, np.array([stats_to_row(s) for s in stats]))
    for name, items in (("block", [block]), ("events", block.events())):
        got = _read_back(tmp_path / name, NativeEncoder(NativeConfig()).encode(items))
        tags = ["activations/m0", "gradients/m1", "weights/m2"]
        assert got.Tags()["histograms"] == tags
        for tag, s in zip(tags, stats, strict=True):
            finite = s.finite
            want = event_accumulator.HistogramValue(
                min=s.hist_lo,
                max=s.hist_hi,
                num=finite,
                sum=s.mean * finite,
                sum_squares=(s.std * s.std + s.mean * s.mean) * finite,
                bucket_limit=s.hist_edges()[1:],
                bucket=[float(c) for c in s.hist_counts],
            )
            assert got.Histograms(tag)[0].histogram_value == want
        assert got.Scalars("grad_norm/m1")[0].value == pytest.approx(stats[1].l2)


def test_gradient_norms_beyond_float32_read_back_as_inf(tmp_path: Path) -> None:
    # simple_value is a float32: a norm beyond its range is stored as inf, never an error
    arrays = [np.arange(1.0, 5.0) * 1e39, np.full(4, 3.0)]
    stats = [reference_stats(a) for a in arrays]
    rows = tuple((f"g{i}", "grad", 0, "float64", (4,)) for i in range(2))
    block = StatsBlock(1, 1.0, "r", 0, rows, np.array([stats_to_row(s) for s in stats]))
    encoder = NativeEncoder(NativeConfig())
    records = [*encoder.encode([block]), *encoder.encode([block])]  # the plan, then its reuse
    got = _read_back(tmp_path / "run", records)
    assert [s.value for s in got.Scalars("grad_norm/g0")] == [math.inf, math.inf]
    assert [s.value for s in got.Scalars("grad_norm/g1")] == [6.0, 6.0]


def test_layouts_that_change_between_steps_are_encoded_by_their_own_plans(
    tmp_path: Path,
) -> None:
    # what each row becomes is worked out once per layout: two layouts of one size and bin
    # count, alternating, must each keep their own names, roles and values
    stats = [reference_stats(np.arange(1.0, n + 2.0)) for n in range(3)]
    matrix = np.array([stats_to_row(s) for s in stats])

    def block(step: int, names: tuple[str, ...], roles: tuple[str, ...]) -> StatsBlock:
        rows = tuple((n, r, 0, "float64", (3,)) for n, r in zip(names, roles, strict=True))
        return StatsBlock(step, 1.0, "r", 0, rows, matrix)

    a = (("a0", "a1", "a2"), ("grad", "output", "weight"))
    b = (("b0", "b1", "b2"), ("output", "grad", "grad"))
    encoder = NativeEncoder(NativeConfig())
    records = [
        r for step, (n, r) in enumerate([a, b, a]) for r in encoder.encode([block(step, n, r)])
    ]
    got = _read_back(tmp_path / "run", records)
    tags = got.Tags()
    assert sorted(tags["scalars"]) == ["grad_norm/a0", "grad_norm/b1", "grad_norm/b2"]
    assert [s.step for s in got.Scalars("grad_norm/a0")] == [0, 2]
    assert [s.value for s in got.Scalars("grad_norm/b2")] == [pytest.approx(stats[2].l2)]
    assert [h.step for h in got.Histograms("activations/a1")] == [0, 2]
    assert [h.step for h in got.Histograms("gradients/b1")] == [1]
    assert got.Histograms("weights/a2")[1].histogram_value.num == 3


def test_all_nan_gradient_norm_reads_nan_never_zero(tmp_path: Path) -> None:
    # The packed row of a tensor with no finite values holds l2 0; TensorBoard must draw NaN.
    nan_grad = reference_stats(np.full(64, math.nan))
    inf_grad = reference_stats(np.array([math.inf, -math.inf]))
    with Writer(tmp_path / "r") as w:
        for step in range(3):
            w.stats("fc.weight", "grad", reference_stats(np.full(8, 2.0)), step=step)
            w.stats("fc.weight", "weight", reference_stats(np.full(8, 1.0)), step=step)
            update = nan_grad if step == 2 else reference_stats(np.full(8, 0.1))
            w.stats("fc.weight", "update", update, step=step)
            w.stats("bad.weight", "grad", nan_grad if step else inf_grad, step=step)
            w.stats("empty.weight", "grad", reference_stats(np.zeros(0)), step=step)
    acc = _accumulator(tmp_path / "r")
    bad = acc.Scalars("grad_norm/bad.weight")
    assert [e.step for e in bad] == [0, 1, 2]
    assert all(math.isnan(e.value) for e in bad), [e.value for e in bad]
    assert [e.value for e in acc.Scalars("grad_norm/fc.weight")] == [pytest.approx(4 * 2**0.5)] * 3
    ratios = [e.value for e in acc.Scalars("update_ratio/fc.weight")]
    assert ratios[:2] == [pytest.approx(0.1)] * 2 and math.isnan(ratios[2])
    # an empty tensor has no values at all: its norm 0 is true, not missing
    assert [e.value for e in acc.Scalars("grad_norm/empty.weight")] == [0.0, 0.0, 0.0]


def test_anomalies_of_one_step_in_two_batches_share_one_text_origin_first(tmp_path: Path) -> None:
    with Writer(tmp_path / "r") as w:
        w.stats("m", "output", reference_stats(np.ones(4)), step=289)
        w.anomaly("nan", step=290, module="6", phase="forward", role="output", nan=3,
                  message="6 produced the first NaN")  # fmt: skip
        w.flush()  # the optimizer's finding comes in a later batch of the same step
        w.anomaly("nan", step=290, module="0", phase="optimizer", role="weight", nan=9,
                  message="0 has NaN weights after the update")  # fmt: skip
        w.flush()
        w.anomaly("inf", step=300, module="1", phase="forward", role="output", posinf=1)
        w.anomaly("nan", step=310, module="", module_type="Sequential", phase="forward", nan=1)
        w.anomaly("nan", step=320, phase="other", nan=1)  # nothing known about where
    texts = _accumulator(tmp_path / "r").Tensors("anomalies")
    last = {t.step: t.tensor_proto.string_val[0].decode() for t in texts}  # TensorBoard's pick
    assert sorted(last) == [290, 300, 310, 320]
    assert "| (root) | forward |" in last[310] and "| ? | other |" in last[320]
    table = last[290].splitlines()
    assert len(table) == 4, table  # header, rule, the origin, then the optimizer finding
    assert "| 6 |" in table[2] and "first NaN" in table[2]
    assert "| 0 |" in table[3] and "| optimizer |" in table[3]
    assert "| 6 |" not in last[300] and "| 1 |" in last[300]
