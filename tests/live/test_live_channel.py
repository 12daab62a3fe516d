from __future__ import annotations

import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vizdebug.live import LiveClient, LiveError, find_live_runs, read_live_file
from vizdebug.live.protocol import encode_frame, read_frame

LOOP = Path(__file__).with_name("loop_numpy.py")
REPO = Path(__file__).resolve().parents[2]


def start_loop(
    run_dir: Path, steps: int, timeout: float = 60.0, *, wait_client: bool = False
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if wait_client:
        env["VIZDEBUG_TEST_WAIT_CLIENT"] = "1"
    proc = subprocess.Popen(
        [sys.executable, str(LOOP), str(run_dir), str(steps), str(timeout)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def slow_loop(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    run_dir = tmp_path / "run"
    proc = start_loop(run_dir, steps=100_000)
    yield proc, run_dir
    proc.kill()
    proc.wait(10)


def attach(run_dir: Path, control: bool = True) -> LiveClient:
    live = read_live_file(run_dir)
    assert live is not None
    return LiveClient.attach(live, control=control)


def test_live_file_is_private_and_listed(slow_loop: tuple[subprocess.Popen[str], Path]) -> None:
    proc, run_dir = slow_loop
    path = run_dir / "live.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = json.loads(path.read_text())
    assert info["pid"] == proc.pid and len(info["token"]) == 64
    assert [r.run_dir for r in find_live_runs(run_dir.parent)] == [run_dir]


def test_pause_step_fetch_breakpoints_and_continue(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start_loop(run_dir, steps=12, wait_client=True)
    with attach(run_dir) as client:
        assert client.controlling
        client.set_break("nan")
        paused = client.wait_event("paused")
        pos = paused["position"]
        assert (pos["step"], pos["module"]) == (7, "b") and "NaN" in paused["reason"]
        out = client.fetch("output")
        assert np.isnan(out[1, 2]) and out[0, 0] == 7.0
        np.testing.assert_array_equal(client.fetch("input0", [[0, 2], 1]), [1.0, 5.0])
        client.clear_break()
        client.step()
        client.wait_event("resumed")
        assert client.wait_event("paused")["position"]["module"] == "c"
        client.step()
        assert client.wait_event("paused")["position"]["module"] == "a"  # next step's first
        client.next_step()
        nxt = client.wait_event("paused")["position"]
        assert (nxt["step"], nxt["module"]) == (9, "a")
        client.cont()
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "done"
    assert proc.wait(30) == 0
    assert not (run_dir / "live.json").exists()


def test_wrong_or_missing_token_is_refused(slow_loop: tuple[subprocess.Popen[str], Path]) -> None:
    _proc, run_dir = slow_loop
    live = read_live_file(run_dir)
    assert live is not None
    with pytest.raises(LiveError, match="wrong token"):
        LiveClient(live.port, "0" * 64)
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(encode_frame({"id": 1, "op": "pause"}))
        reply, _ = read_frame(sock)
        assert not reply["ok"] and "token" in reply["error"]
    with attach(run_dir) as client:  # still serving, never paused by the refused clients
        assert client.status()["paused"] is False


def read_reply(sock: socket.socket) -> dict[str, object]:
    """The next reply (server events such as "control" skipped)."""
    while "event" in (header := read_frame(sock)[0]):
        pass
    return header


def test_malformed_and_oversized_messages(slow_loop: tuple[subprocess.Popen[str], Path]) -> None:
    _proc, run_dir = slow_loop
    live = read_live_file(run_dir)
    assert live is not None
    # before the token: one bad frame gets one error reply and the connection is closed
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(struct.pack(">I", 5) + b"{oops")
        reply, _ = read_frame(sock)
        assert not reply["ok"] and "not JSON" in reply["error"]
        assert sock.recv(1) == b""
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(struct.pack(">I", 1 << 30))
        reply, _ = read_frame(sock)
        assert not reply["ok"] and "4096-byte limit" in reply["error"]
    # after it: malformed frames get error replies and the connection goes on
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(encode_frame({"id": 2, "op": "hello", "token": live.token}))
        assert read_reply(sock)["ok"]
        sock.sendall(struct.pack(">I", 5) + b"{oops")
        reply = read_reply(sock)
        assert not reply["ok"] and "not JSON" in reply["error"]
        sock.sendall(encode_frame({"id": 3, "op": "launch"}))
        reply = read_reply(sock)
        assert reply["id"] == 3 and not reply["ok"] and "unknown op" in reply["error"]
        sock.sendall(struct.pack(">I", (1 << 20) + 1))
        reply = read_reply(sock)
        assert not reply["ok"] and "limit" in reply["error"]
        assert sock.recv(1) == b""  # the frame boundary is lost: closed
    with attach(run_dir) as client:
        assert "paused" in client.status()


def test_one_controller_others_observe(slow_loop: tuple[subprocess.Popen[str], Path]) -> None:
    _proc, run_dir = slow_loop
    with attach(run_dir) as first, attach(run_dir) as second:
        assert first.controlling and not second.controlling
        with pytest.raises(LiveError, match="another client controls"):
            second.pause()
        first.pause()
        first.wait_event("paused")
        assert second.status()["paused"] is True
        assert second.fetch("output").shape == (3, 4)
        first.cont()


def test_controller_killed_while_paused_releases_the_run_at_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start_loop(run_dir, steps=300, timeout=600.0)  # only the release can let it go
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from vizdebug.live import LiveClient, read_live_file\n"
            "c = LiveClient.attach(read_live_file(Path(sys.argv[1])))\n"
            "c.pause(); c.wait_event('paused'); print('paused', flush=True); time.sleep(600)",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "paused"
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "done"  # resumed at once and finished
    assert proc.wait(60) == 0


def test_controller_detach_releases_the_run_and_frees_control(
    slow_loop: tuple[subprocess.Popen[str], Path],
) -> None:
    _proc, run_dir = slow_loop
    with attach(run_dir, control=False) as observer:
        controller = attach(run_dir)
        assert controller.controlling and not observer.controlling
        assert observer.wait_event("control", timeout=30)["free"] is False  # it was announced
        controller.pause()
        controller.wait_event("paused")
        assert observer.status()["controlled"] is True
        controller.close()  # Escape in the TUI
        free = observer.wait_event("control", timeout=30)
        assert free["free"] is True and free["released"] is True
        observer.wait_event("resumed", timeout=30)  # training goes on at once
        status = observer.status()
        assert status["paused"] is False and status["controlled"] is False
        assert status["step"] is not None  # where training is while it runs
        assert observer.take_control() and observer.controlling
        observer.pause()  # the observer now controls the run
        assert observer.wait_event("paused")["position"]["module"] in ("a", "b", "c")
        observer.cont()


def test_ctrl_c_works_while_paused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start_loop(run_dir, steps=1000)
    with attach(run_dir) as client:
        client.pause()
        client.wait_event("paused")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) != 0  # KeyboardInterrupt ended it while paused
    deadline = time.time() + 10
    while (run_dir / "live.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not (run_dir / "live.json").exists()  # removed at exit
