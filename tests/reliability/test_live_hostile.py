"""The live port is not an amplifier and takes any input (issue 24, items 2 and 7).

A real training subprocess (``live_train_big.py``: vizdebug.watch, live debugger on) and real
sockets: unauthenticated oversized frames and idle connections must not grow its memory or
its threads; 2,000 garbage and hostile frames (NaN, 1e999, 10**400, deep JSON, ``Infinity``
ids, wrong types, random bytes) each get an error reply, and afterwards the server still
answers, training still steps, and its stderr holds no traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import socket
import struct
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
MIB = 1 << 20

pytestmark = pytest.mark.slow


class Training:
    """live_train_big.py in a subprocess; stdout "step N" lines and stderr read by threads."""

    def __init__(self, run_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(TRAIN), str(run_dir), "1000000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.last_step = -1
        self.stderr = ""
        self._ready: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        assert self._ready.get(timeout=120) == "ready"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("step "):
                self.last_step = int(line.split()[1])
            elif line.strip() == "ready":
                self._ready.put("ready")

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr += line

    def status(self, field: str) -> int:
        """A number from /proc/PID/status (VmRSS in kB, Threads)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def wait_steps(self, beyond: int, timeout: float = 120.0) -> int:
        deadline = time.monotonic() + timeout
        while self.last_step <= beyond:
            assert self.proc.poll() is None, self.stderr
            assert time.monotonic() < deadline, f"training stuck at step {self.last_step}"
            time.sleep(0.05)
        return self.last_step


@pytest.fixture
def training(tmp_path: Path) -> Iterator[Training]:
    t = Training(tmp_path / "run")
    yield t
    t.proc.kill()
    t.proc.wait(30)


def live_of(run_dir: Path) -> LiveRun:
    deadline = time.monotonic() + 60
    while (live := read_live_file(run_dir)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return live


def frame(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def test_unauthenticated_oversized_frames_and_idle_connections_keep_memory_bounded(
    training: Training, tmp_path: Path
) -> None:
    live = live_of(tmp_path / "run")
    training.wait_steps(30)  # warmed up: the step's memory is allocated
    threads0 = training.status("Threads")
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                peak[0] = max(peak[0], training.status("VmRSS"))
            time.sleep(0.02)

    # a step's temporaries make RSS swing by tens of MB: compare peaks, quiet vs attacked
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(5.0)
    stop.set()
    sampler.join()
    rss0, peak[0], stop = peak[0], 0, threading.Event()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    chunk = b"\0" * MIB
    sent = 0
    for announce in ("length", "nbytes") * 3:  # six 255 MiB frames, as the attack
        with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
            if announce == "length":
                sock.sendall(struct.pack(">I", 255 * MIB))
            else:
                hello = {"op": "hello", "token": "0" * 64, "nbytes": 255 * MIB}
                sock.sendall(frame(json.dumps(hello).encode()))
            with contextlib.suppress(OSError):  # refused: the server closes on us
                for _ in range(255):
                    sock.sendall(chunk)
                    sent += MIB
            reply, _ = read_frame(sock) if sent < 255 * MIB else ({"ok": False}, b"")
            assert reply["ok"] is False
    idle = []
    for _ in range(50):  # 50 connections that never say hello
        idle.append(socket.create_connection(("127.0.0.1", live.port), timeout=10))
    time.sleep(1.0)
    threads_held = training.status("Threads")
    refused = 0
    for sock in idle:
        sock.settimeout(10)
        with contextlib.suppress(OSError):
            reply, _ = read_frame(sock)  # the refusal, or "no hello in time" after 5 s
            refused += not reply["ok"]
    for sock in idle:
        sock.close()
    stop.set()
    sampler.join()
    growth_mb = (peak[0] - rss0) / 1024
    print(
        f"\nFIGURES rss_quiet_peak_mb={rss0 / 1024:.0f} rss_attack_peak_mb={peak[0] / 1024:.0f} "
        f"growth_mb={growth_mb:.1f} bytes_pushed_mb={sent / MIB:.0f} "
        f"threads_before={threads0} threads_with_50_idle={threads_held} idle_refused={refused}"
    )
    # one buffered 255 MiB frame would show; a step's temporaries swing RSS by about 40 MB
    assert growth_mb < 128, f"RSS grew {growth_mb:.0f} MB under unauthenticated frames"
    assert threads_held <= threads0 + 16 + 1  # at most max_clients reader threads
    assert refused == 50  # each got a refusal: over the cap, or no hello within 5 s
    with LiveClient.attach(live) as client:  # still serving, never paused by any of it
        assert client.status()["paused"] is False
    training.wait_steps(training.last_step + 10)
    assert "Traceback" not in training.stderr


# -- hostile frames ------------------------------------------------------------------------

#: JSON texts of values a client may send instead of the expected ones.
VALUES = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1" + "0" * 400,
    "-1" + "0" * 400,
    str(2**64),
    "-1",
    "0",
    "1.5",
    '""',
    '"' + "x" * 5000 + '"',
    "[]",
    "{}",
    "[" * 20 + "]" * 20,
    "true",
    "null",
    '"\\u202e\\u001b[2J"',
    "[null, [0, 1e999]]",
    '"*"',
    '"param:weight"',
    '"abs_gt"',
    '"nan"',
]
OPS = ["hello", "status", "fetch", "control", "ping", "run_to", "break", "clear", "launch"]
FIELDS = ["id", "op", "kind", "value", "module", "once", "break_id", "step", "name", "slice"]


def hostile_frames(rng: random.Random, n: int) -> Iterator[bytes]:
    """Raw frames (length prefix included): hostile JSON, broken JSON, random bytes."""
    for i in range(n):
        kind = i % 10
        if kind < 6:  # a request whose fields hold hostile values
            fields = {"op": json.dumps(rng.choice(OPS))}
            for name in rng.sample(FIELDS, rng.randint(1, 5)):
                fields[name] = rng.choice(VALUES)
            body = "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"
            yield frame(body.encode())
        elif kind == 6:  # deep JSON
            depth = rng.choice([17, 1000, 100_000])
            yield frame(b'{"id":1,"op":"status","x":' + b"[" * depth + b"]" * depth + b"}")
        elif kind == 7:  # not an object, not JSON, not UTF-8
            yield frame(rng.choice([b"[1,2]", b'"status"', b"42", b"{oops", b"\xff\xfe{}", b""]))
        elif kind == 8:  # random bytes
            yield frame(rng.randbytes(rng.randint(1, 300)))
        else:  # a valid request with bytes flipped
            raw = bytearray(b'{"id":7,"op":"break","kind":"abs_gt","value":1.0,"module":"*"}')
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            yield frame(bytes(raw))


def replies(sock: socket.socket) -> Iterator[dict[str, object]]:
    """Replies on the connection (server events skipped)."""
    while True:
        header, _ = read_frame(sock)
        if "event" not in header:
            yield header


def connect(live: LiveRun) -> tuple[socket.socket, Iterator[dict[str, object]]]:
    """Attach and take control (the previous connection's release may still be under way)."""
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=30)
    sock.sendall(encode_frame({"id": 0, "op": "hello", "token": live.token}))
    it = replies(sock)
    reply = next(it)
    assert reply["ok"]
    deadline = time.monotonic() + 30
    while reply.get("control") is not True:
        assert time.monotonic() < deadline, "control never came free"
        time.sleep(0.05)
        sock.sendall(encode_frame({"id": 0, "op": "control"}))
        reply = next(it)
    return sock, it


def test_2000_hostile_frames_get_error_replies_and_no_tracebacks(
    training: Training, tmp_path: Path
) -> None:
    live = live_of(tmp_path / "run")
    rng = random.Random(24)
    tried = answered = errors = reconnects = 0
    # unauthenticated: each connection's one hostile first frame gets one refusal
    for raw in hostile_frames(rng, 200):
        with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
            sock.sendall(raw)
            reply, _ = read_frame(sock)
            tried += 1
            answered += 1
            errors += reply["ok"] is False
            assert reply["ok"] is False
    # authenticated (the first client controls): every frame gets exactly one reply
    sock, it = connect(live)
    for raw in hostile_frames(rng, 1800):
        sock.sendall(raw)
        tried += 1
        try:
            reply = next(it)
        except (ConnectionError, OSError) as exc:  # pragma: no cover - a failure to explain
            raise AssertionError(f"connection lost after {raw[:80]!r}") from exc
        answered += 1
        errors += reply["ok"] is False
        assert isinstance(reply.get("ok"), bool)
        if reply["ok"] is False:
            assert isinstance(reply.get("error"), str) and reply["error"]
        if reply["ok"] is False and "limit" in str(reply["error"]):
            sock.close()  # the server closes a connection that lost its frame boundary
            sock, it = connect(live)
            reconnects += 1
    sock.sendall(encode_frame({"id": 1, "op": "clear", "break_id": None}))
    sock.sendall(encode_frame({"id": 2, "op": "continue"}))
    assert next(it)["ok"] and next(it)["ok"]
    sock.close()
    with LiveClient.attach(live) as client:  # not poisoned: status, breakpoints, control
        status = client.status()
        assert status["breakpoints"] == [] and status["paused"] is False
        bp = client.set_break("abs_gt", 1e30, once=True)
        assert bp["once"] is True
        client.clear_break()
    before = training.last_step
    training.wait_steps(before + 10)
    tracebacks = training.stderr.count("Traceback")
    print(
        f"\nFIGURES frames_tried={tried} replies={answered} error_replies={errors} "
        f"reconnects={reconnects} tracebacks={tracebacks} steps_after={training.last_step}"
    )
    assert tried == answered == 2000
    assert tracebacks == 0, training.stderr[-3000:]
    assert "Exception in thread" not in training.stderr
