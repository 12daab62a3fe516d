"""A live client that stops reading never stops training (issue 24, item 1).

Real training subprocesses (``live_train_big.py``: vizdebug.watch on a model with a 16 MiB
layer) and real sockets. The stalled observer asks for the 16 MiB weight and never reads the
reply, as a TUI suspended with Ctrl-Z would.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vizdebug.live import LiveClient, LiveRun, read_live_file
from vizdebug.live.protocol import encode_frame, read_frame

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TRAIN = HERE / "live_train_big.py"
LOOP = REPO / "tests" / "live" / "loop_numpy.py"

pytestmark = pytest.mark.slow


class Training:
    """A training subprocess whose stdout lines ("step N") are read by a thread."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.last_step = -1
        self.stderr = ""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        assert self.next_line(120) == "ready"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("step "):
                self.last_step = int(line.split()[1])
            self.lines.put(line)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr += line

    def next_line(self, timeout: float) -> str:
        return self.lines.get(timeout=timeout)

    def wait_steps(self, beyond: int, timeout: float = 120.0) -> int:
        """Wait until training printed a step past ``beyond``; return it (fails on a hang)."""
        deadline = time.monotonic() + timeout
        while self.last_step <= beyond:
            assert self.proc.poll() is None, self.stderr
            assert time.monotonic() < deadline, f"training stuck at step {self.last_step}"
            time.sleep(0.05)
        return self.last_step

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(30)


def live_of(run_dir: Path) -> LiveRun:
    deadline = time.monotonic() + 60
    while (live := read_live_file(run_dir)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return live


@pytest.fixture
def big(tmp_path: Path) -> Iterator[Training]:
    training = Training([str(TRAIN), str(tmp_path / "run"), "1000000"])
    yield training
    training.stop()


def stalled_fetch(live: LiveRun, name: str) -> socket.socket:
    """An observer that asks for ``name`` and never reads the reply."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
    sock.connect(("127.0.0.1", live.port))
    sock.sendall(encode_frame({"id": 1, "op": "hello", "token": live.token, "control": False}))
    hello, _ = read_frame(sock)
    assert hello["ok"] and hello["control"] is False
    sock.sendall(encode_frame({"id": 2, "op": "fetch", "name": name}))
    return sock


def test_a_client_that_stops_reading_a_16mb_tensor_never_stops_training(
    big: Training, tmp_path: Path
) -> None:
    live = live_of(tmp_path / "run")
    with LiveClient.attach(live) as ctl:
        ctl.run_to(5)
        while (pos := ctl.wait_event("paused", 60)["position"])["module"] != "2":
            ctl.step()
        assert pos["phase"] == "forward"
        assert "param:weight" in ctl.status()["tensors"]
        stalled = stalled_fetch(live, "param:weight")  # 2048 x 2048 float32 = 16 MiB
        try:
            time.sleep(0.5)  # the server has started writing the 16 MiB and is stuck
            ctl.cont()
            resumed_at = time.monotonic()
            before = big.wait_steps(5)
            made = big.wait_steps(before + 100) - before  # training goes on meanwhile
            assert made >= 100
            # the stalled client is dropped with a message (its queue overflows with the
            # "resumed" event behind the 16 MiB, or its send times out after 10 s); the
            # controller stays attached and in control throughout
            deadline = time.monotonic() + 60
            while "dropped live client" not in big.stderr:
                assert time.monotonic() < deadline, big.stderr
                time.sleep(0.1)
            assert "fell behind" in big.stderr or "stopped reading" in big.stderr
            stalled_steps = big.wait_steps(before + 100) - before
            reason = big.stderr.strip().splitlines()[-1]
            print(
                f"\nFIGURES steps_until_the_stalled_client_was_dropped={stalled_steps} "
                f"seconds={time.monotonic() - resumed_at:.1f} log={reason!r}"
            )
            assert ctl.status()["paused"] is False and ctl.controlling
            ctl.pause()  # and still controls the run
            ctl.wait_event("paused", 60)
            ctl.cont()
        finally:
            stalled.close()
    big.wait_steps(big.last_step + 20)
    assert "Traceback" not in big.stderr


def test_observer_stalled_while_the_controller_steps(big: Training, tmp_path: Path) -> None:
    """Every step sends paused/resumed events to the stalled observer too: none waits on it."""
    live = live_of(tmp_path / "run")
    with LiveClient.attach(live) as ctl:
        ctl.run_to(3)
        while ctl.wait_event("paused", 60)["position"]["module"] != "2":
            ctl.step()
        stalled = stalled_fetch(live, "param:weight")
        try:
            time.sleep(0.5)
            for _ in range(200):  # 400 events queued for (or dropped with) the observer
                ctl.step()
                ctl.wait_event("paused", 60)
            ctl.cont()
            big.wait_steps(10)
        finally:
            stalled.close()
    assert "Traceback" not in big.stderr


def test_a_stalled_controller_is_dropped_and_the_paused_run_goes_on(tmp_path: Path) -> None:
    """A controller stopped with SIGSTOP while the run is paused (Ctrl-Z on the TUI)."""
    run_dir = tmp_path / "run"
    # resume timeout 600 s: only the idle timeout (2 s here) can let the run go
    training = Training(
        [str(LOOP), str(run_dir), "300", "600"], env={"VIZDEBUG_TEST_IDLE_TIMEOUT": "2"}
    )
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from vizdebug.live import LiveClient, read_live_file\n"
            "c = LiveClient.attach(read_live_file(Path(sys.argv[1])), keepalive=0.5)\n"
            "c.pause(); c.wait_event('paused'); print('paused', flush=True); time.sleep(600)",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "paused"
        time.sleep(3)  # pings keep a live controller attached past the idle timeout
        assert training.proc.poll() is None
        assert training.lines.empty()  # still paused: nothing printed
        child.send_signal(signal.SIGSTOP)
        assert training.next_line(120) == "done"  # dropped as idle, released, finished
        assert training.proc.wait(60) == 0
        assert "Traceback" not in training.stderr
    finally:
        child.kill()
        child.wait(10)
        training.stop()
