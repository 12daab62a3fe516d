"""The TUI side of the live channel: find live runs, attach, control, fetch tensors."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import VizdebugError
from ..runs.summary import is_pid_alive
from .protocol import ProtocolError, array_from_payload, encode_frame, read_frame
from .server import LIVE_FILE

__all__ = ["LiveClient", "LiveError", "LiveRun", "find_live_runs", "read_live_file"]


class LiveError(VizdebugError):
    """The live channel refused a request or could not be reached."""


@dataclass(frozen=True)
class LiveRun:
    """A run whose training process serves the live channel."""

    run_dir: Path
    run: str
    pid: int
    port: int
    token: str


def read_live_file(run_dir: Path) -> LiveRun | None:
    """The live endpoint of a run, or None if it has none (or its process is gone)."""
    try:
        info = json.loads((run_dir / LIVE_FILE).read_text())
        live = LiveRun(
            run_dir, str(info["run"]), int(info["pid"]), int(info["port"]), str(info["token"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return live if is_pid_alive(live.pid) else None


def find_live_runs(root: Path) -> list[LiveRun]:
    """Every live run under ``root``."""
    found = []
    for dirpath, _dirs, files in os.walk(root):
        if LIVE_FILE in files:
            live = read_live_file(Path(dirpath))
            if live is not None:
                found.append(live)
    return sorted(found, key=lambda r: str(r.run_dir))


class LiveClient:
    """A connection to one training process.

    Args:
        port: The server's loopback port.
        token: The token from ``live.json``.
        control: Ask to control (pause, step, breakpoints); otherwise observe.
        timeout: Seconds to wait for a reply.
        keepalive: Seconds between pings while otherwise silent (the server closes connections
            silent for its ``idle_timeout``, 60 s by default); None sends none.

    Raises:
        LiveError: The server cannot be reached or refused the token.
    """

    def __init__(
        self,
        port: int,
        token: str,
        *,
        control: bool = True,
        timeout: float = 10.0,
        keepalive: float | None = 15.0,
    ) -> None:
        self.timeout = timeout
        try:
            self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError as exc:
            raise LiveError(f"cannot reach the training process on port {port}: {exc}") from None
        self._sock.settimeout(None)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._ids = itertools.count(1)
        self._waiting: dict[int, queue.Queue[tuple[dict[str, Any], bytes]]] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()  # one frame at a time from the callers' threads
        self._stop = threading.Event()
        #: Messages the server sent on its own ("paused", "resumed").
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.closed = False
        self._reader = threading.Thread(target=self._read, name="vizdebug-live-reader", daemon=True)
        self._reader.start()
        hello = self.request("hello", token=token, control=control)
        self.controlling = bool(hello.get("control"))
        if keepalive is not None:
            threading.Thread(
                target=self._keepalive, args=(keepalive,), name="vizdebug-live-ping", daemon=True
            ).start()

    def _keepalive(self, every: float) -> None:
        while not self._stop.wait(every) and not self.closed:
            try:
                self._send({"id": next(self._ids), "op": "ping"})
            except OSError:
                return

    def _send(self, header: dict[str, Any]) -> None:
        with self._send_lock:
            self._sock.sendall(encode_frame(header))

    @classmethod
    def attach(
        cls, live: LiveRun, *, control: bool = True, keepalive: float | None = 15.0
    ) -> LiveClient:
        """Connect to a run found by :func:`find_live_runs` (arguments as for the class)."""
        return cls(live.port, live.token, control=control, keepalive=keepalive)

    def _read(self) -> None:
        try:
            while True:
                header, payload = read_frame(self._sock)
                rid = header.get("id")
                if rid is None and "event" in header:
                    self.events.put(header)
                    continue
                with self._lock:
                    waiter = self._waiting.pop(rid, None) if isinstance(rid, int) else None
                if waiter is not None:
                    waiter.put((header, payload))
        except (ConnectionError, OSError, ProtocolError):
            self.closed = True
            self.events.put({"event": "disconnected"})
            with self._lock:
                waiters = list(self._waiting.values())
                self._waiting.clear()
            for waiter in waiters:
                waiter.put(({"ok": False, "error": "disconnected"}, b""))

    def _call(self, op: str, **fields: Any) -> tuple[dict[str, Any], bytes]:
        if self.closed:
            raise LiveError("the connection to the training process is closed")
        rid = next(self._ids)
        box: queue.Queue[tuple[dict[str, Any], bytes]] = queue.Queue(1)
        with self._lock:
            self._waiting[rid] = box
        try:
            self._send({"id": rid, "op": op, **fields})
        except OSError as exc:
            with self._lock:
                self._waiting.pop(rid, None)
            raise LiveError(f"the connection to the training process broke: {exc}") from None
        try:
            header, payload = box.get(timeout=self.timeout)
        except queue.Empty:
            raise LiveError(f"no reply to {op!r} within {self.timeout} s") from None
        if not header.get("ok"):
            raise LiveError(str(header.get("error", "request refused")))
        if "control" in header:
            self.controlling = bool(header["control"])
        return header, payload

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return the reply.

        Raises:
            LiveError: The server answered with an error, or did not answer.
        """
        return self._call(op, **fields)[0]

    def status(self) -> dict[str, Any]:
        """Paused?, reason, position, breakpoints and the tensor names available."""
        return self.request("status")

    def pause(self) -> None:
        """Pause at the next hook point."""
        self.request("pause")

    def cont(self) -> None:
        """Continue."""
        self.request("continue")

    def step(self) -> None:
        """Run to the next hook point and pause there."""
        self.request("step")

    def next_step(self) -> None:
        """Run to the same hook point in the next training step."""
        self.request("next_step")

    def run_to(self, step: int) -> None:
        """Run until training step ``step`` and pause at its first hook point."""
        self.request("run_to", step=step)

    def set_break(
        self, kind: str, value: Any = None, module: str = "*", *, once: bool = False
    ) -> dict[str, Any]:
        """Set a breakpoint (see :data:`vizdebug.live.debugger.BREAK_KINDS`).

        Args:
            kind: The kind.
            value: Its step, glob or threshold.
            module: For conditions, the modules checked.
            once: Remove it after it fired once.
        """
        reply = self.request("break", kind=kind, value=value, module=module, once=once)
        return dict(reply["breakpoint"])

    def take_control(self) -> bool:
        """Ask for control; returns whether this client controls now."""
        return bool(self.request("control").get("control"))

    def clear_break(self, break_id: int | None = None) -> None:
        """Remove one breakpoint, or all."""
        self.request("clear", break_id=break_id)

    def fetch(self, name: str, index: Sequence[Any] | None = None) -> npt.NDArray[Any]:
        """Fetch a tensor at the paused position, whole or sliced.

        Args:
            name: One of ``status()["tensors"]``.
            index: Per leading dimension an int, None, or ``[start, stop]``.
        """
        header, payload = self._call(
            "fetch", name=name, slice=list(index) if index is not None else None
        )
        return np.array(array_from_payload(header, payload))

    def wait_event(self, kind: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for a server message of ``kind`` ("paused", "resumed"), discarding others.

        Raises:
            LiveError: None arrived in time, or the connection closed.
        """
        try:
            while True:
                event = self.events.get(timeout=timeout)
                if event.get("event") == kind:
                    return event
                if event.get("event") == "disconnected":
                    raise LiveError("the training process went away")
        except queue.Empty:
            raise LiveError(f"no {kind!r} event within {timeout} s") from None

    def close(self) -> None:
        """Disconnect (if this client controlled the run, the run goes on at once)."""
        self.closed = True
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def __enter__(self) -> LiveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
