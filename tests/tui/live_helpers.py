"""Helpers of the live-debugger TUI tests: a real training subprocess (live_train.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from vizdebug.live import LiveClient, LiveRun, read_live_file

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "tests" / "torch" / "live_train.py"


def start_training(
    run_dir: Path,
    steps: int,
    nan_step: int,
    timeout: float = 60.0,
) -> subprocess.Popen[str]:
    """Start live_train.py; returns once it prints "ready" (watching, live.json written)."""
    args = [str(TRAIN), str(run_dir), str(steps), str(nan_step), str(timeout)]
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "ready", line
    return proc


def wait_live(run_dir: Path, timeout: float = 30.0) -> LiveRun:
    """The run's live endpoint, once its live.json is there."""
    deadline = time.monotonic() + timeout
    while (live := read_live_file(run_dir)) is None:
        assert time.monotonic() < deadline, "live.json never appeared"
        time.sleep(0.05)
    return live


def pause_at(live: LiveRun) -> int:
    """Have training stop at the first hook point (conv's forward) of a step soon, unattended.

    A client pauses training, sets a one-shot breakpoint at the next step and detaches: the
    run goes on (a controller's detach releases it) and stops at that step with nobody in
    control, waiting (its resume timeout) for the app. Returns that step.
    """
    with LiveClient.attach(live) as client:
        client.pause()
        where = client.wait_event("paused", timeout=60)["position"]
        step = int(where["step"]) + 1
        client.set_break("step", step, once=True)
    return step


def finish(proc: subprocess.Popen[str], steps: int) -> None:
    """Wait for "done STEPS" and a clean exit."""
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == f"done {steps}"
    assert proc.wait(60) == 0


def fake_live_run(run_dir: Path, port: int) -> LiveRun:
    """A live.json naming this (alive) process and ``port`` (nothing listening there)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "pid": os.getpid(),
        "host": "127.0.0.1",
        "port": port,
        "token": "x",
        "run": run_dir.name,
    }
    (run_dir / "live.json").write_text(json.dumps(info))
    live = read_live_file(run_dir)
    assert live is not None
    return live
