"""A recorded step's statistics wait for room in the writer's queue instead of being dropped."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from vizdebug import Writer
from vizdebug.events import Event
from vizdebug.runs.reader import load_run
from vizdebug.tf.deferred import Row, stats_items


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


def _items(step: int, n: int, *, wait: float | None) -> list[object]:
    values = np.arange(n * 100, dtype=np.float32)
    rows = [Row(f"l{i}", "output", 0, "float32", 1) for i in range(n)]
    return list(stats_items(step, 1.0, rows, values, np.full(n, 100, np.int32),
                            chunk_bytes=400, wait_for_room=wait))  # fmt: skip


def test_statistics_wait_for_the_writer_and_scalars_keep_their_room(tmp_path: Path) -> None:
    gate = Gate()
    w = Writer(tmp_path, max_queue_bytes=4000)
    w.defer(gate)
    assert gate.entered.wait(10)
    done = threading.Event()

    def produce() -> None:
        for step in range(3):
            for item in _items(step, 4, wait=None):
                w.defer(item)  # type: ignore[arg-type]
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    assert not done.wait(0.3)  # held: the queue's half for statistics is full
    for i in range(5):  # other items still find room, and are not held up
        w.scalar("x", i, i)
    gate.release.set()
    assert done.wait(10)
    t.join()
    w.close()
    run = load_run(tmp_path)
    assert w.dropped == {}
    assert run.info[0]["dropped"] == {}
    assert sorted({(s.step, s.name) for s in run.stats}) == [
        (s, f"l{i}") for s in range(3) for i in range(4)
    ]
    assert len(run.scalars["x"]) == 5


def test_a_chunk_bigger_than_the_budget_goes_alone_when_the_queue_is_empty(
    tmp_path: Path,
) -> None:
    with Writer(tmp_path, max_queue_bytes=100) as w:
        for item in _items(0, 3, wait=None):
            w.defer(item)  # type: ignore[arg-type]
    assert w.dropped == {}
    assert len(load_run(tmp_path).stats) == 3


def test_a_set_wait_limit_drops_and_counts(tmp_path: Path) -> None:
    gate = Gate()
    w = Writer(tmp_path, max_queue_bytes=1000)
    w.defer(gate)
    assert gate.entered.wait(10)
    for item in _items(0, 6, wait=0.05):
        w.defer(item)  # type: ignore[arg-type]
    assert w.dropped["deferred"] >= 1
    gate.release.set()
    w.close()
    assert load_run(tmp_path).info[0]["dropped"] == w.dropped


@pytest.mark.parametrize("wait", [None, 0.0])
def test_a_closed_writer_refuses(tmp_path: Path, wait: float | None) -> None:
    w = Writer(tmp_path)
    w.close()
    from vizdebug.errors import WriterClosedError

    with pytest.raises(WriterClosedError):
        w.defer(_items(0, 1, wait=wait)[0])  # type: ignore[arg-type]


def test_a_callback_with_max_stall_warns_once_and_counts(tmp_path: Path) -> None:
    from keras_models import compile_, digits_like, sequential_cnn

    import vizdebug

    gate = Gate()
    writer = Writer(tmp_path, max_queue_bytes=4096)
    writer.defer(gate)  # holds the writer thread: no room will come
    assert gate.entered.wait(10)
    writer.scalar("x", 1.0, 0)
    x, y = digits_like(32)
    cb = vizdebug.keras.Callback(writer=writer, every=1, max_stall=0.0)
    with pytest.warns(RuntimeWarning, match="statistics dropped") as seen:
        compile_(sequential_cnn()).fit(x, y, batch_size=8, verbose=0, callbacks=[cb])
    assert len([w for w in seen if "statistics dropped" in str(w.message)]) == 1
    gate.release.set()
    writer.close()
    assert writer.dropped["deferred"] >= 4  # every step lost at least one chunk, counted
    run = load_run(tmp_path)
    assert run.info[0]["dropped"]["deferred"] == writer.dropped["deferred"]
    assert any("max_stall=0.0" in n.text for n in run.notes)


def test_max_stall_must_be_a_duration() -> None:
    import vizdebug

    with pytest.raises(ValueError, match="max_stall"):
        vizdebug.keras.Callback(max_stall=-1.0)
