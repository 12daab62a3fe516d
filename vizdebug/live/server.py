"""The control server in the training process: loopback only, token first, never blocking.

It listens on 127.0.0.1 on a random port and writes ``live.json`` (pid, port, token, run; mode
0600) into the run directory; the file is removed when the server closes.

What a peer can cost the training process, by phase:

* **Before the token** a connection may send one frame of at most
  :data:`~vizdebug.live.protocol.HELLO_MAX_HEADER` bytes with no payload, within
  ``hello_timeout`` seconds, and it must be ``{"op": "hello", "token": ...}`` (compared in
  constant time); anything else gets one error reply and the connection is closed. At most
  ``max_clients`` connections exist at once; more are refused at accept.
* **After it** requests are at most :data:`~vizdebug.live.protocol.MAX_HEADER` bytes, never a
  payload; each gets one reply (errors included, see :mod:`.handlers`). A connection silent for
  ``idle_timeout`` seconds is closed (the client pings well within it).
* **Sending** goes through each connection's bounded queue and sender thread
  (:mod:`.conn`): the training thread only offers messages; a client whose queue is full or
  whose socket has not taken a frame for ``send_timeout`` seconds is dropped with a warning.

One client at a time controls (pause, step, breakpoints); the others observe. When the
controlling client leaves, by closing, dying or being dropped, the run goes on at once and the
observers are told that control is free.
"""

from __future__ import annotations

import atexit
import contextlib
import hmac
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .conn import Connection
from .debugger import Debugger
from .handlers import Handler
from .protocol import HELLO_MAX_HEADER, MAX_HEADER, MAX_PAYLOAD, ProtocolError, read_frame

__all__ = ["LIVE_FILE", "ControlServer"]

log = logging.getLogger("vizdebug")

LIVE_FILE = "live.json"


class ControlServer:
    """Serves a :class:`~vizdebug.live.debugger.Debugger` to TUI clients.

    Args:
        debugger: The state to control.
        run_dir: Where ``live.json`` goes.
        run: Run name, written to ``live.json``.
        port: 0 for a random free port.
        token: Default: 32 random bytes, hex.
        max_payload: Largest tensor (bytes) sent in one frame.
        max_clients: Connections open at once (authenticated or not).
        hello_timeout: Seconds a new connection has to authenticate.
        idle_timeout: Seconds an authenticated connection may stay silent.
        send_timeout: Seconds one frame may take to leave before its client counts as stalled.
        max_queued: Bytes that may wait to be sent to one client.
        clock: Monotonic clock (injectable).
    """

    def __init__(
        self,
        debugger: Debugger,
        run_dir: Path,
        *,
        run: str = "",
        port: int = 0,
        token: str | None = None,
        max_payload: int = MAX_PAYLOAD,
        max_clients: int = 16,
        hello_timeout: float = 5.0,
        idle_timeout: float = 60.0,
        send_timeout: float = 10.0,
        max_queued: int = 4 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.debugger = debugger
        self.run_dir = run_dir
        self.token = token or secrets.token_hex(32)
        self.max_payload = max_payload
        self.max_clients = max_clients
        self.hello_timeout = hello_timeout
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self.max_queued = max_queued
        self.clock = clock
        self.handler = Handler(debugger, max_payload=max_payload)
        #: Connections refused because ``max_clients`` were open.
        self.refused = 0
        self._sock = socket.create_server(("127.0.0.1", port))
        self._sock.settimeout(0.5)  # the accept loop is also the stalled-sender watchdog
        self.port: int = self._sock.getsockname()[1]
        self._conns: set[Connection] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.live_file = run_dir / LIVE_FILE
        self._write_live_file(run)
        debugger.add_listener(self.broadcast)
        self._thread = threading.Thread(target=self._accept, name="vizdebug-live", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _write_live_file(self, run: str) -> None:
        info = {
            "pid": os.getpid(),
            "host": "127.0.0.1",
            "port": self.port,
            "token": self.token,
            "run": run,
            "started": time.time(),
        }
        fd = os.open(self.live_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        os.chmod(self.live_file, 0o600)  # in case the file existed with wider rights

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._conns)

    def close(self) -> None:
        """Stop serving, disconnect clients and remove ``live.json``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        # say goodbye (clients tell "training ended" from "this client was dropped"), briefly
        for conn in conns:
            if conn.authenticated:
                conn.offer({"event": "closing", "reason": "training closed the live channel"})
        deadline = self.clock() + 0.5
        for conn in conns:
            conn.drain(max(0.0, deadline - self.clock()))
        for conn in conns:
            conn.close("the training process closed the live channel")
        with contextlib.suppress(FileNotFoundError):
            self.live_file.unlink()
        atexit.unregister(self.close)

    def broadcast(self, message: dict[str, Any]) -> None:
        """Offer ``message`` to every authenticated client; never blocks (training thread)."""
        with self._lock:
            conns = [c for c in self._conns if c.authenticated]
        for conn in conns:
            conn.offer(message)

    # -- accepting, and the watchdog ------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _addr = self._sock.accept()
            except TimeoutError:
                self._watch()
                continue
            except OSError:
                return
            self._watch()
            # Replies and event messages go out back to back: without NODELAY the second
            # waits for the peer's delayed ACK (~40 ms a step on Linux).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(
                sock, max_queued=self.max_queued, send_timeout=self.send_timeout, clock=self.clock
            )
            with self._lock:
                full = len(self._conns) >= self.max_clients
                if not full:
                    self._conns.add(conn)
            if full:
                self.refused += 1
                sock.settimeout(0.2)
                conn.send_now({"ok": False, "error": f"{self.max_clients} clients attached"})
                conn.finish()
                continue
            threading.Thread(
                target=self._serve, args=(conn,), name="vizdebug-live-client", daemon=True
            ).start()

    def _watch(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            if conn.stalled():
                conn.close(f"it stopped reading for {self.send_timeout:g} s", warn=True)

    # -- one client ----------------------------------------------------------------------

    def _serve(self, conn: Connection) -> None:
        try:
            if self._hello(conn):
                self._requests(conn)
        except OSError:  # ConnectionError, TimeoutError, or the socket shut by close()
            pass
        finally:
            self._drop(conn)

    def _hello(self, conn: Connection) -> bool:
        """The first frame: small, no payload, the token. Nothing is buffered before it."""
        deadline = self.clock() + self.hello_timeout
        rid: int | None = None
        try:
            msg, _ = read_frame(
                conn.sock, max_header=HELLO_MAX_HEADER, max_payload=0, deadline=deadline
            )
            got = msg.get("id")
            rid = got if isinstance(got, int) and not isinstance(got, bool) else None
            token = msg.get("token")
            if msg.get("op") != "hello" or not isinstance(token, str):
                raise PermissionError("send hello with the token from live.json first")
            if not hmac.compare_digest(token.encode(), self.token.encode()):
                raise PermissionError("wrong token")
        except (ProtocolError, PermissionError) as exc:
            conn.send_now({"id": rid, "ok": False, "error": str(exc)})
            return False
        except TimeoutError:
            conn.send_now({"id": None, "ok": False, "error": "no hello in time"})
            return False
        conn.authenticated = True
        conn.sock.settimeout(self.idle_timeout)
        conn.start_sender()
        want = msg.get("control", True)
        conn.controller = bool(want is True and self.debugger.acquire())
        conn.put({"id": rid, "ok": True, "control": conn.controller, "pid": os.getpid()})
        if conn.controller:
            self.broadcast({"event": "control", "free": False})
        return True

    def _requests(self, conn: Connection) -> None:
        while not self._closed and not conn.closed:
            try:
                msg, _ = read_frame(conn.sock, max_header=MAX_HEADER, max_payload=0)
            except ProtocolError as exc:
                conn.put({"id": None, "ok": False, "error": str(exc)})
                if not exc.recoverable:
                    conn.drain(1.0)
                    return  # the next frame boundary is lost
                continue
            except TimeoutError:
                conn.close(f"silent for {self.idle_timeout:g} s")
                log.info("vizdebug: closed idle live client %s", conn.peer)
                return
            was_controller = conn.controller
            reply, payload = self.handler.handle(conn, msg)
            conn.put(reply, payload)
            if conn.controller and not was_controller:
                self.broadcast({"event": "control", "free": False})

    def _drop(self, conn: Connection) -> None:
        with self._lock:
            self._conns.discard(conn)
        conn.finish()
        if conn.controller:
            conn.controller = False
            released = self.debugger.release()
            if not self._closed:
                self.broadcast({"event": "control", "free": True, "released": released})
