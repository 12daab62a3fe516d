from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vizdebug import RunNotFoundError, Writer
from vizdebug.errors import CorruptRecordError
from vizdebug.runs import RunReader, find_runs, load_run
from vizdebug.runs.records import encode_record


def _event_file(run_dir: Path) -> Path:
    (f,) = [p for p in run_dir.iterdir() if "tfevents" in p.name]
    return f


def test_tail_reads_only_what_is_new(tmp_path: Path) -> None:
    w = Writer(tmp_path, flush_secs=0.05)
    reader = RunReader(tmp_path)
    for i in range(5):
        w.scalar("x", i, i)
    w.flush()
    first = [e for e in reader.poll() if getattr(e, "tag", "") == "x"]
    assert [e.value for e in first] == [0, 1, 2, 3, 4]
    assert reader.poll() == []
    w.scalar("x", 5, 5)
    w.flush()
    assert [getattr(e, "value", None) for e in reader.poll()] == [5]
    w.close()


def test_truncated_last_record_is_left_for_later(tmp_path: Path) -> None:
    with Writer(tmp_path) as w:
        for i in range(3):
            w.scalar("x", i, i)
    path = _event_file(tmp_path)
    whole = path.read_bytes()
    extra = encode_record(b"\x08\x01")  # a complete record of a minimal Event
    path.write_bytes(whole + extra[:7])  # cut inside the next record's header
    reader = RunReader(tmp_path)
    assert len([e for e in reader.poll() if getattr(e, "tag", "") == "x"]) == 3
    assert reader.problems == []
    with path.open("ab") as f:
        f.write(extra[7:])
    reader.poll()
    assert reader.problems == []


def test_corrupt_record_is_reported_with_file_and_offset(tmp_path: Path) -> None:
    with Writer(tmp_path) as w:
        for i in range(10):
            w.scalar("x", i, i)
            w.flush()  # one record each
    path = _event_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip a byte inside the last records' data
    path.write_bytes(bytes(data))
    run = load_run(tmp_path)
    assert run.problems, "the damaged record was not reported"
    problem = run.problems[0]
    assert problem.path == str(path) and problem.offset > 0
    assert "checksum" in problem.message
    assert len(run.scalars["x"]) >= 8  # everything else is still there


def test_load_run_errors(tmp_path: Path) -> None:
    with pytest.raises(RunNotFoundError, match="does not exist"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunNotFoundError, match="no event files"):
        load_run(tmp_path / "empty")
    with pytest.raises(RunNotFoundError, match="not a directory"):
        find_runs(tmp_path / "missing")


def test_find_runs_nested(tmp_path: Path) -> None:
    for name in ("a", "b/c"):
        with Writer(tmp_path / name) as w:
            w.scalar("x", 1.0)
    assert [p.relative_to(tmp_path).as_posix() for p in find_runs(tmp_path)] == ["a", "b/c"]


def test_summary_writer_and_tensorboardx_files_are_read(tmp_path: Path) -> None:
    from tensorboardX import SummaryWriter as XWriter
    from torch.utils.tensorboard import SummaryWriter

    rng = np.random.default_rng(0)
    for cls, name in ((SummaryWriter, "torch"), (XWriter, "tbx")):
        w = cls(str(tmp_path / name))
        for step in range(3):
            w.add_scalar("loss", 1.0 / (step + 1), step)
            w.add_histogram("weights", rng.normal(size=100), step)
        w.close()
        run = load_run(tmp_path / name)
        assert [round(s.value, 4) for s in run.scalars["loss"]] == [1.0, 0.5, 0.3333]
        hists = run.histograms["weights"]
        assert [h.step for h in hists] == [0, 1, 2]
        assert hists[0].num == 100 and sum(hists[0].bucket_counts) == 100
        assert run.framework == "other"


def test_tf2_summaries_as_keras_writes_them_are_read(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    writer = tf.summary.create_file_writer(str(tmp_path / "keras"))
    with writer.as_default():
        for step in range(3):
            tf.summary.scalar("epoch_loss", 0.5 * step, step=step)
            tf.summary.histogram("dense/kernel", tf.constant([1.0, 2.0, 2.0, 3.0]), step=step)
    writer.close()
    run = load_run(tmp_path / "keras")
    assert [s.value for s in run.scalars["epoch_loss"]] == [0.0, 0.5, 1.0]
    hist = run.histograms["dense/kernel"][-1]
    assert hist.num == 4 and hist.min == 1.0 and hist.max == 3.0


KILLED_CHILD = """
import sys, time
import vizdebug
w = vizdebug.Writer(sys.argv[1], flush_secs=0.5)
i = 0
while True:
    for _ in range(100):
        w.scalar("x", i, i)
        i += 1
    print(time.time(), i, flush=True)
    time.sleep(0.01)
"""


def test_sigkill_loses_at_most_the_last_flush_interval(tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, str(run_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.stdout is not None
    progress: list[tuple[float, int]] = []
    start = time.time()
    while time.time() - start < 3.0:
        line = proc.stdout.readline()
        if not line:
            break
        t, n = line.split()
        progress.append((float(t), int(n)))
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert progress, "the child wrote nothing"
    # what was enqueued more than the flush interval (plus scheduling slack) before the kill
    must_have = max((n for t, n in progress if t < killed_at - 1.5), default=0)
    assert must_have > 0
    run = load_run(run_dir)
    values = [int(s.value) for s in run.scalars["x"]]
    assert values[:must_have] == list(range(must_have))
    assert not [p for p in run.problems if "checksum" in p.message]


def test_damaged_header_resyncs_to_the_next_record(tmp_path: Path) -> None:
    from vizdebug.runs.records import RecordReader

    records = [encode_record(bytes([8, i])) for i in range(1, 6)]  # Event(wall_time=...)
    path = tmp_path / "events.out.tfevents.1.h"
    data = bytearray(b"".join(records))
    third = sum(len(r) for r in records[:2])
    data[third + 2] ^= 0x10  # the third record's length field
    path.write_bytes(bytes(data))
    reader = RecordReader(str(path))
    got, problems = [], []
    while True:
        try:
            for _, d in reader.read():
                got.append(d)
            break
        except CorruptRecordError as exc:
            problems.append((exc.offset, exc.reason))
    assert got == [bytes([8, i]) for i in (1, 2, 4, 5)]
    assert problems == [(third, problems[0][1])] and "header damaged" in problems[0][1]


def test_absurd_length_with_a_valid_checksum_is_refused(tmp_path: Path) -> None:
    from vizdebug.runs.records import masked_crc

    with Writer(tmp_path) as w:
        w.scalar("x", 1.0, 0)
    path = _event_file(tmp_path)
    head = (1 << 40).to_bytes(8, "little")
    with path.open("ab") as f:
        f.write(head + masked_crc(head).to_bytes(4, "little") + encode_record(b"\x08\x01"))
    run = load_run(tmp_path)
    assert len(run.scalars["x"]) == 1
    (problem,) = run.problems
    assert "over the 512 MiB limit" in problem.message and problem.offset > 0


def test_a_zero_filled_stretch_is_skipped_in_one_search(tmp_path: Path) -> None:
    from vizdebug.runs.records import RecordReader

    path = tmp_path / "events.out.tfevents.1.h"
    before, after = encode_record(b"\x08\x01"), encode_record(b"\x08\x02")
    path.write_bytes(before + bytes(16 << 20) + after)  # 16 MB of zeros (a crash's hole)
    reader = RecordReader(str(path))
    got: list[bytes] = []
    problems = []
    while True:
        try:
            for _, data in reader.read():
                got.append(data)
            break
        except CorruptRecordError as exc:
            problems.append(exc.offset)
    assert got == [b"\x08\x01", b"\x08\x02"] and problems == [len(before)]
