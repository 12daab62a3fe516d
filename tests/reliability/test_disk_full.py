"""A full disk (a real 8 MB tmpfs) during a run: recording comes back when space is freed.

The NaN anomaly and its snapshot recorded during the outage are written afterwards, what was
let go is counted in run.json and shown by ``vizdebug show``, and the outage is logged once.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import vizdebug
from vizdebug.fanout import MAX_HELD
from vizdebug.runs import load_run
from vizdebug.runs.snapshots import load_snapshot


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB tmpfs (room, once the filler is gone, for what a training at every=1 held
    during the outage); skipped with the reason where mounting is not permitted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> None:
    """Take every free byte of the filesystem holding ``path``."""
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                if len(chunk) == 1:
                    return
                chunk = chunk[: len(chunk) // 2]


def _wait(cond: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_full_disk_outage_and_recovery(small_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_dir = small_disk / "run"
    filler = small_disk / "filler"
    caplog.set_level(logging.WARNING, logger="vizdebug")
    w = vizdebug.Writer(run_dir, flush_secs=0.1)
    try:
        for step in range(50):
            w.scalar("loss", 1.0 / (step + 1), step)
        w.flush()
        _fill(filler)
        # the outage: steps go on, a NaN is found, its snapshot is taken
        outage_steps = range(50, 50 + MAX_HELD + 5000)  # more than a failing sink may hold
        for step in outage_steps:
            w.scalar("loss", float(step), step)
            if step == 60:
                w.anomaly("nan", step=step, module="net.fc", phase="forward", message="NaN out")
                w.snapshot({"x": np.full(1000, np.nan, np.float32)}, step, reason="anomaly")
        w.flush()
        rundir = w.sink_status[0]
        _wait(lambda: rundir.outage)
        time.sleep(1.0)  # several flush intervals and retries into the outage
        assert not (run_dir / "snapshots").exists() or not any((run_dir / "snapshots").iterdir())
        filler.unlink()  # space comes back
        freed = time.monotonic()
        _wait(lambda: not rundir.outage)
        print(f"recording resumed {time.monotonic() - freed:.2f} s after space was freed")
        for step in range(outage_steps.stop, outage_steps.stop + 20):
            w.scalar("loss", float(step), step)
        w.flush()
    finally:
        w.close()

    run = load_run(run_dir)
    assert not run.problems, run.problems
    steps = [e.step for e in run.scalars["loss"]]
    assert steps[:50] == list(range(50))  # before the outage
    assert steps[-20:] == list(range(outage_steps.stop, outage_steps.stop + 20))  # after it
    (anomaly,) = run.anomalies
    assert anomaly.step == 60 and anomaly.message == "NaN out"
    (snap,) = run.snapshots
    assert snap.step == 60
    x = load_snapshot(Path(snap.path), run_dir=run_dir)["x"]
    assert x.shape == (1000,) and np.isnan(x).all()

    info = json.loads((run_dir / "run.json").read_text())
    sink = info["sinks"]["rundir"]
    lost = len(outage_steps) - (len(steps) - 50 - 20)
    assert sink["dropped"] == lost > 0  # counted, exactly what is missing
    print(f"outage: {len(outage_steps)} steps written, {lost} scalars let go (counted)")
    assert sink["outages"] >= 1 and not sink["outage"] and not sink["disabled"]
    assert info["status"] == "closed"

    messages = [r.getMessage() for r in caplog.records]
    failed = [m for m in messages if "'rundir' failed" in m]
    assert len(failed) == sink["outages"], messages  # once per outage, not every 2 s
    assert len([m for m in messages if "could not update run info" in m]) <= 1
    assert len([m for m in messages if "could not write snapshot" in m]) == 1

    show = subprocess.run(
        [sys.executable, "-m", "vizdebug.cli", "show", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert show.returncode == 0, show.stderr
    (line,) = [ln for ln in show.stdout.splitlines() if "dropped" in ln and "rundir" in ln]
    assert str(lost) in line and "rundir" in line, line


TRAINING = r"""
import os, sys, time
import torch
import vizdebug

run_dir, signals = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
w = vizdebug.watch(model, opt, logdir=run_dir, every=1, live=False)
print("ready", flush=True)
step, poisoned = 0, False
while not os.path.exists(signals + ".stop"):
    x = torch.randn(32, 8)
    if not poisoned and os.path.exists(signals + ".nan"):
        x[0, 0] = float("nan")
        poisoned = True
        print("nan", step, flush=True)
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    w.step(loss)
    step += 1
    time.sleep(0.01)
w.close()
print("closed", step, flush=True)
"""


@pytest.mark.slow
def test_training_nan_during_a_full_disk_is_written_afterwards(
    small_disk: Path, tmp_path: Path
) -> None:
    """A real torch training: its NaN anomaly and flight-recorder snapshot, found while the
    disk is full, are in the run once space comes back; training never stops."""
    run_dir, signals, filler = small_disk / "run", tmp_path / "signal", small_disk / "filler"
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAINING, str(run_dir), str(signals)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        _fill(filler)
        time.sleep(0.5)
        signals.with_suffix(".nan").touch()
        kind, nan_step = proc.stdout.readline().split()
        assert kind == "nan"
        time.sleep(1.5)  # the anomaly and its snapshot wait in memory
        filler.unlink()
        time.sleep(2.5)  # more than one flush interval: the retry writes them
        signals.with_suffix(".stop").touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and out.startswith("closed"), err[-2000:]
    assert "Traceback" not in err
    run = load_run(run_dir)
    assert not run.problems, run.problems
    assert [a.step for a in run.anomalies][:1] == [int(nan_step)]
    assert run.snapshots, "the flight recorder's snapshot was lost"
    snap = run.snapshots[0]
    assert snap.step == int(nan_step)
    tensors = load_snapshot(Path(snap.path), run_dir=run_dir)
    assert tensors and any(np.isnan(v).any() for v in tensors.values() if v.dtype.kind == "f")
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "closed" and info["sinks"]["rundir"]["outages"] >= 1
    steps = {e.step for e in run.scalars["loss"]}
    assert max(steps) + 1 == int(out.split()[1])  # recording resumed up to the last step
    assert err.count("'rundir' failed") == info["sinks"]["rundir"]["outages"]
