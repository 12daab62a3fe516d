from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest

from vizdebug import Writer, WriterClosedError
from vizdebug.events import Anomaly, Event, ModuleInfo, Scalar, TensorStats
from vizdebug.runs import load_run, load_snapshot
from vizdebug.stats import reference_stats


class Collect:
    name = "collect"

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.flushes = 0
        self.closed = False

    def write(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True


class Raising(Collect):
    name = "raiser"

    def write(self, events: Sequence[Event]) -> None:
        raise RuntimeError("sink is broken")


class Gate:
    """A deferred item that holds the writer thread until released."""

    nbytes = 0

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def resolve(self, run: str, rank: int) -> Iterable[Event]:
        self.entered.set()
        self.release.wait(30)
        return []


def test_roundtrip_of_every_event_kind(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    stats = reference_stats(np.array([[1.0, np.nan], [0.0, -3.5]], np.float32))
    with Writer(run_dir, framework="torch", versions={"torch": "x"}) as w:
        w.step = 3
        w.scalar("loss", 0.25)
        w.scalar("acc", np.float32(0.5), step=4)
        w.scalars({"a": 1, "b": 2.0}, step=5)
        w.stats("layer1.conv", "output", stats, step=6)
        w.anomaly("nan", module="layer1.conv", phase="forward", role="output", nan=1, step=6)
        w.structure(
            "torch", [ModuleInfo("", "Net", 0), ModuleInfo("fc", "Linear", 10, 10, ((2, 3),))]
        )
        w.note("skipped", "layer x: integer output")
        rel = w.snapshot({"x": np.arange(6.0).reshape(2, 3)}, step=6, reason="anomaly")
    run = load_run(run_dir)
    assert [(s.step, s.value) for s in run.scalars["loss"]] == [(3, 0.25)]
    assert run.scalars["acc"][0].step == 4 and run.scalars["acc"][0].value == 0.5
    assert run.scalars["b"][0].value == 2.0
    (ts,) = run.stats
    assert (ts.name, ts.role, ts.step, ts.run) == ("layer1.conv", "output", 6, "run")
    assert ts.stats.numel == 4 and ts.stats.nan == 1 and ts.stats.hist_counts == stats.hist_counts
    assert ts.stats.shape == (2, 2) and ts.stats.dtype == "float32"
    (a,) = run.anomalies
    assert (a.kind, a.module, a.phase, a.nan, a.step) == ("nan", "layer1.conv", "forward", 1, 6)
    (st,) = run.structures
    assert st.modules[1] == ModuleInfo("fc", "Linear", 10, 10, ((2, 3),))
    assert run.notes[0].text == "layer x: integer output"
    (snap,) = run.snapshots
    assert snap.path == rel and snap.tensors == ("x",) and snap.reason == "anomaly"
    assert load_snapshot(run_dir / rel)["x"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert run.run_infos[0].framework == "torch" and run.run_infos[0].versions["torch"] == "x"
    assert run.info[0]["status"] == "closed" and run.info[0]["anomalies"] == 1
    assert not run.problems


def test_tensorboard_own_loader_reads_the_files(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing import event_accumulator as ea

    with Writer(tmp_path) as w:
        for step in range(20):
            w.scalar("loss", 1.0 / (step + 1), step)
        w.stats("fc", "grad", reference_stats(np.ones(5)), step=19)
    acc = ea.EventAccumulator(str(tmp_path), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    loss = acc.Scalars("loss")
    assert [e.step for e in loss] == list(range(20))
    assert loss[4].value == pytest.approx(0.2)
    assert "vizdebug/stats" in acc.PluginTagToContent("vizdebug")
    assert "vizdebug/stats" in acc.Tags()["tensors"]


def test_a_raising_sink_is_isolated_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = Collect(), Raising()
    with (
        caplog.at_level(logging.WARNING, logger="vizdebug"),
        Writer(tmp_path, sinks=[bad, good]) as w,
    ):
        for i in range(10):
            w.scalar("x", i, i)
            w.flush()
        status = {s.name: s for s in w.sink_status}
    logged = [r for r in caplog.records if "raiser" in r.getMessage()]
    assert len(logged) == 1 and "sink is broken" in logged[0].getMessage()
    assert [e.value for e in good.events if isinstance(e, Scalar)] == list(range(10))
    assert good.closed and status["raiser"].failures >= 10 and status["collect"].failures == 0
    assert len(load_run(tmp_path).scalars["x"]) == 10
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["sinks"]["raiser"]["failures"] >= 10


def test_a_slow_sink_does_not_hold_back_the_run_directory(tmp_path: Path) -> None:
    release = threading.Event()

    class Slow(Collect):
        name = "slow"

        def write(self, events: Sequence[Event]) -> None:
            release.wait(30)
            super().write(events)

    slow = Slow()
    w = Writer(tmp_path, sinks=[slow])
    for i in range(100):
        w.scalar("x", i, i)
    w.flush(timeout=0.2)  # the run directory is waited for, the stuck sink only briefly
    assert len(load_run(tmp_path).scalars["x"]) == 100
    assert not slow.events
    release.set()
    w.close()
    assert len([e for e in slow.events if isinstance(e, Scalar)]) == 100


def test_queue_full_drops_newest_counts_them_and_keeps_anomalies(tmp_path: Path) -> None:
    gate = Gate()
    w = Writer(tmp_path, max_queue_bytes=96 * 10)
    w.defer(gate)
    assert gate.entered.wait(10)
    for i in range(50):
        w.scalar("x", i, i)
    w.anomaly("nan", module="m", step=7)
    assert w.dropped == {"scalar": 40}
    gate.release.set()
    w.close()
    run = load_run(tmp_path)
    assert [s.value for s in run.scalars["x"]] == list(range(10))
    assert len(run.anomalies) == 1
    assert run.info[0]["dropped"] == {"scalar": 40}
    assert run.run_infos[-1].dropped == {"scalar": 40}


def test_block_policy_waits_instead_of_dropping(tmp_path: Path) -> None:
    gate = Gate()
    w = Writer(tmp_path, max_queue_bytes=96 * 10, when_full="block")
    w.defer(gate)
    assert gate.entered.wait(10)
    done = threading.Event()

    def produce() -> None:
        for i in range(50):
            w.scalar("x", i, i)
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    assert not done.wait(0.3)  # blocked while the writer thread is held
    gate.release.set()
    t.join(10)
    w.close()
    assert w.dropped == {}
    assert len(load_run(tmp_path).scalars["x"]) == 50


def test_bad_input_raises_typed_errors(tmp_path: Path) -> None:
    w = Writer(tmp_path)
    with pytest.raises(TypeError, match="tag must be a str"):
        w.scalar(3, 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a number"):
        w.scalar("x", "high")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="vizdebug event"):
        w.write("x")  # type: ignore[arg-type]
    w.close()
    w.close()  # idempotent
    with pytest.raises(WriterClosedError, match="closed"):
        w.scalar("x", 1.0)
    for bad in ({"flush_secs": 0}, {"max_queue_bytes": 0}, {"when_full": "sometimes"}):
        with pytest.raises(ValueError):
            Writer(tmp_path / "bad", **bad)  # type: ignore[arg-type]


def test_default_logdir_and_rank_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIZDEBUG_LOGDIR", str(tmp_path / "root"))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with Writer() as w:
        w.scalar("x", 1.0)
    assert w.run_dir.parent == tmp_path / "root"
    assert (w.run_dir / "run.rank1.json").exists()
    (f,) = [p for p in w.run_dir.iterdir() if "tfevents" in p.name]
    assert f.name.endswith("vizdebug-r1")
    assert load_run(w.run_dir).scalars["x"][0].rank == 1
    with Writer() as w2:
        pass
    assert w2.run_dir != w.run_dir  # two runs in the same second get distinct directories


def test_stamping_and_deferred_resolution(tmp_path: Path) -> None:
    class Item:
        nbytes = 16

        def resolve(self, run: str, rank: int) -> Iterable[Event]:
            return [
                TensorStats(
                    step=2,
                    run=run,
                    rank=rank,
                    name="p",
                    role="weight",
                    stats=reference_stats(np.zeros(3)),
                )
            ]

    with Writer(tmp_path) as w:
        w.step = 9
        w.write(Anomaly(kind="inf"))
        w.defer(Item())
    run = load_run(tmp_path)
    assert run.anomalies[0].step == 9 and run.anomalies[0].run == tmp_path.name
    assert run.anomalies[0].wall_time > 0
    assert run.stats[0].stats.zeros == 3


def test_the_run_directory_runner_waits_instead_of_dropping() -> None:
    from vizdebug.fanout import SinkRunner

    release = threading.Event()

    class Held(Collect):
        def write(self, events: Sequence[Event]) -> None:
            release.wait(30)
            super().write(events)

    sink = Held()
    runner = SinkRunner(sink, max_pending=10, block=True)
    batches = [[Scalar(tag="x", value=float(i), step=i)] * 5 for i in range(6)]
    done = threading.Event()

    def feed() -> None:
        for b in batches:
            runner.submit(b)
        done.set()

    t = threading.Thread(target=feed)
    t.start()
    assert not done.wait(0.3)  # held up: the sink's queue is full
    release.set()
    t.join(10)
    runner.close(10)
    assert runner.status.dropped == 0 and len(sink.events) == 30
