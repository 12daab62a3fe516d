"""One client connection of the control server: a bounded outgoing queue and its sender thread.

The training thread never writes to a socket. Messages it produces (``paused``, ``resumed``)
are *offered* to each connection: appended to the connection's queue if that stays under its
byte cap, otherwise the connection is dropped (logged) and training goes on. A sender thread
per connection drains the queue with blocking writes; :meth:`Connection.stalled` tells the
server's watchdog when one write has been stuck longer than the send timeout (a client that
stopped reading), and the watchdog drops that connection too.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .protocol import ProtocolError, encode_header

__all__ = ["Connection"]

log = logging.getLogger("vizdebug")


class Connection:
    """A client socket with a bounded send queue.

    Args:
        sock: The accepted socket.
        max_queued: Bytes that may wait behind the frame being written; one frame larger
            than this is accepted only into an empty queue (a fetched tensor the client asked
            for), so a healthy client fetching a large tensor is not dropped for the small
            events that arrive meanwhile.
        send_timeout: Seconds one frame may take to go out before the client counts as stalled.
        clock: Monotonic clock (injectable).
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        max_queued: int,
        send_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sock = sock
        self.max_queued = max_queued
        self.send_timeout = send_timeout
        self.clock = clock
        try:
            host, port = sock.getpeername()[:2]
            self.peer = f"{host}:{port}"
        except OSError:
            self.peer = "?"
        self.authenticated = False
        self.controller = False
        #: Why the connection was closed ("" while open).
        self.closed_because = ""
        self._cond = threading.Condition()
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self._queued = 0
        self._inflight = 0  # the frame being written: not counted against the cap
        self._sending_since: float | None = None
        self._sender: threading.Thread | None = None

    @property
    def closed(self) -> bool:
        """Whether the connection was closed."""
        return bool(self.closed_because)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting to be sent (the frame being sent included)."""
        return self._queued

    def start_sender(self) -> None:
        """Start the sender thread (after authentication: unauthenticated peers get none)."""
        self._sender = threading.Thread(
            target=self._send_loop, name="vizdebug-live-send", daemon=True
        )
        self._sender.start()

    def offer(self, header: dict[str, Any], payload: bytes = b"") -> bool:
        """Queue a frame without waiting; drop the client if its queue is full.

        Safe from any thread, the training thread included (it holds a lock for microseconds).
        Returns whether the frame was queued.
        """
        frame = self._frame(header, payload)
        if frame is None:
            return False
        with self._cond:
            if self.closed:
                return False
            size = len(frame[0]) + len(frame[1])
            if self._room(size):
                self._append(frame, size)
                return True
            waiting = self._queued
        self.close(f"it fell behind ({waiting} bytes waiting to be sent)", warn=True)
        return False

    def put(self, header: dict[str, Any], payload: bytes = b"") -> bool:
        """Queue a reply, waiting (on the caller's thread) for room; never from training.

        Waits at most ``send_timeout`` seconds for the queue to drain, then drops the client.
        Returns whether the frame was queued.
        """
        frame = self._frame(header, payload)
        if frame is None:
            return False
        size = len(frame[0]) + len(frame[1])
        deadline = self.clock() + self.send_timeout
        with self._cond:
            while not self.closed and not self._room(size):
                left = deadline - self.clock()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
            if self.closed:
                return False
            if self._room(size):
                self._append(frame, size)
                return True
            waiting = self._queued
        self.close(f"it stopped reading ({waiting} bytes waiting to be sent)", warn=True)
        return False

    def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the queue to empty (a last error reply)."""
        deadline = self.clock() + timeout
        with self._cond:
            while self._queued and not self.closed:
                left = deadline - self.clock()
                if left <= 0:
                    return
                self._cond.wait(min(left, 0.1))

    def stalled(self) -> bool:
        """Whether one frame has been going out for longer than ``send_timeout``."""
        since = self._sending_since
        return since is not None and self.clock() - since > self.send_timeout

    def close(self, reason: str, *, warn: bool = False) -> None:
        """Close (idempotent): wake the sender and the reader; the fd is closed by :meth:`finish`.

        Args:
            reason: Why, for the log and :attr:`closed_because`.
            warn: Log a warning (the client was dropped, as opposed to leaving).
        """
        with self._cond:
            if self.closed:
                return
            self.closed_because = reason
            self._queue.clear()
            self._queued = self._inflight = 0
            self._cond.notify_all()
        if warn:
            log.warning("vizdebug: dropped live client %s: %s; training goes on", self.peer, reason)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        """After :meth:`close`, from the reader thread: wait for the sender, close the socket."""
        self.close("closed")
        sender = self._sender
        if sender is not None and sender is not threading.current_thread():
            sender.join(5.0)
        with contextlib.suppress(OSError):
            self.sock.close()

    def send_now(self, header: dict[str, Any]) -> None:
        """Send a small frame directly, before any sender thread exists (a refusal)."""
        frame = self._frame(header, b"")
        if frame is not None:
            with contextlib.suppress(OSError):
                self.sock.sendall(frame[0])

    def _frame(self, header: dict[str, Any], payload: bytes) -> tuple[bytes, bytes] | None:
        try:
            return encode_header(header, len(payload)), payload
        except ProtocolError as exc:  # our own message: a bug, never the client's fault
            log.debug("vizdebug live: cannot encode %r: %s", header.get("event"), exc)
            return None

    def _room(self, size: int) -> bool:
        """Whether a frame of ``size`` bytes may wait behind the frame being written."""
        behind = self._queued - self._inflight
        return self._queued == 0 or behind + size <= self.max_queued

    def _append(self, frame: tuple[bytes, bytes], size: int) -> None:
        self._queue.append(frame)
        self._queued += size
        self._cond.notify_all()

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self.closed:
                    self._cond.wait()
                if self.closed:
                    return
                head, payload = self._queue[0]
                self._inflight = len(head) + len(payload)
                self._sending_since = self.clock()
            try:
                self.sock.sendall(head)
                if payload:
                    self.sock.sendall(payload)
            except OSError as exc:
                self.close(f"sending failed: {exc}")
                return
            with self._cond:
                self._sending_since = None
                self._inflight = 0
                if self._queue:
                    self._queue.popleft()
                    self._queued -= len(head) + len(payload)
                self._cond.notify_all()
