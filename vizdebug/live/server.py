"""The control server in the training process: loopback only, token required, no pickle.

It listens on 127.0.0.1 on a random port and writes ``live.json`` (pid, port, token, run; mode
0600) into the run directory; the file is removed when the server closes. Each client gets a
daemon thread. The first message must be ``{"op": "hello", "token": ...}``; nothing is acted on
before it. One client at a time controls (pause, step, breakpoints); others observe (status,
fetch). Malformed messages get an error reply and the server keeps serving.
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
from pathlib import Path
from typing import Any

import numpy as np

from ..runs.snapshots import to_numpy
from .debugger import Debugger
from .protocol import MAX_PAYLOAD, ProtocolError, array_to_payload, encode_frame, read_frame

__all__ = ["LIVE_FILE", "ControlServer"]

log = logging.getLogger("vizdebug")

LIVE_FILE = "live.json"
_CONTROL_OPS = {"pause", "continue", "step", "next_step", "run_to", "break", "clear"}


def _slice(array: np.ndarray[Any, Any], spec: Any) -> np.ndarray[Any, Any]:
    """Apply a JSON slice: a list with an int (index) or [start, stop] per leading dim."""
    if spec is None:
        return array
    if not isinstance(spec, list) or len(spec) > array.ndim:
        raise ValueError(f"slice must be a list of at most {array.ndim} entries")
    index: list[int | slice] = []
    for item in spec:
        if isinstance(item, int) and not isinstance(item, bool):
            index.append(item)
        elif item is None:
            index.append(slice(None))
        elif (
            isinstance(item, list)
            and len(item) == 2
            and all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in item)
        ):
            index.append(slice(item[0], item[1]))
        else:
            raise ValueError(f"bad slice entry {item!r}: use an int, null or [start, stop]")
    try:
        return np.asarray(array[tuple(index)])
    except IndexError as exc:
        raise ValueError(f"slice out of range: {exc}") from None


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.authenticated = False
        self.controller = False

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        with self.lock:
            self.sock.sendall(encode_frame(header, payload))


class ControlServer:
    """Serves a :class:`~vizdebug.live.debugger.Debugger` to TUI clients.

    Args:
        debugger: The state to control.
        run_dir: Where ``live.json`` goes.
        run: Run name, written to ``live.json``.
        port: 0 for a random free port.
        token: Default: 32 random bytes, hex.
        max_payload: Largest tensor (bytes) sent or accepted in one frame.
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
    ) -> None:
        self.debugger = debugger
        self.run_dir = run_dir
        self.token = token or secrets.token_hex(32)
        self.max_payload = max_payload
        self._sock = socket.create_server(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        self._clients: set[_Client] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.live_file = run_dir / LIVE_FILE
        self._write_live_file(run)
        debugger.add_listener(self._broadcast)
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

    def close(self) -> None:
        """Stop serving, disconnect clients and remove ``live.json``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(FileNotFoundError):
            self.live_file.unlink()
        atexit.unregister(self.close)

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _addr = self._sock.accept()
            except OSError:
                return
            # Replies and event messages go out back to back: without NODELAY the second
            # waits for the peer's delayed ACK (~40 ms a step on Linux).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = _Client(sock)
            with self._lock:
                self._clients.add(client)
            threading.Thread(
                target=self._serve, args=(client,), name="vizdebug-live-client", daemon=True
            ).start()

    def _broadcast(self, message: dict[str, Any]) -> None:
        with self._lock:
            clients = [c for c in self._clients if c.authenticated]
        for client in clients:
            with contextlib.suppress(OSError):
                client.send(message)

    def _serve(self, client: _Client) -> None:
        try:
            while not self._closed:
                try:
                    header, _payload = read_frame(client.sock, max_payload=self.max_payload)
                except ProtocolError as exc:
                    client.send({"ok": False, "error": str(exc)})
                    if not exc.recoverable:
                        return  # the next frame boundary is lost: close this connection
                    continue
                self._handle(client, header)
                if not client.authenticated:
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            self._drop(client)

    def _drop(self, client: _Client) -> None:
        with self._lock:
            self._clients.discard(client)
            if client.controller:
                client.controller = False
                self.debugger.controllers -= 1
        with contextlib.suppress(OSError):
            client.sock.close()

    def _handle(self, client: _Client, msg: dict[str, Any]) -> None:
        rid = msg.get("id")
        op = msg.get("op")
        reply: dict[str, Any] = {"id": rid, "ok": True}
        try:
            if not client.authenticated:
                token = msg.get("token")
                if op != "hello" or not isinstance(token, str):
                    raise PermissionError("send hello with the token from live.json first")
                if not hmac.compare_digest(token.encode(), self.token.encode()):
                    raise PermissionError("wrong token")
                client.authenticated = True
                reply["control"] = self._take_control(client, bool(msg.get("control", True)))
                reply["pid"] = os.getpid()
            elif op == "status":
                reply.update(self.debugger.status())
            elif op == "fetch":
                self._fetch(client, rid, msg)
                return
            elif op == "control":
                reply["control"] = self._take_control(client, True)
            elif op in _CONTROL_OPS:
                if not client.controller:
                    raise PermissionError("another client controls this run; you may observe")
                self._control(op, msg, reply)
            else:
                raise ValueError(f"unknown op {op!r}")
        except (PermissionError, ValueError, TypeError, KeyError) as exc:
            reply = {"id": rid, "ok": False, "error": str(exc)}
        client.send(reply)

    def _take_control(self, client: _Client, wanted: bool) -> bool:
        with self._lock:
            if wanted and not client.controller and self.debugger.controllers == 0:
                client.controller = True
                self.debugger.controllers += 1
            return client.controller

    def _control(self, op: str, msg: dict[str, Any], reply: dict[str, Any]) -> None:
        dbg = self.debugger
        if op == "break":
            bp = dbg.set_break(str(msg.get("kind")), msg.get("value"), msg.get("module", "*"))
            reply["breakpoint"] = bp.to_json()
        elif op == "clear":
            dbg.clear_break(msg.get("break_id"))
        else:
            dbg.command(op, msg.get("step"))

    def _fetch(self, client: _Client, rid: Any, msg: dict[str, Any]) -> None:
        try:
            name = msg.get("name")
            tensors = self.debugger.tensors()
            if not self.debugger.paused:
                raise ValueError("training is running: pause it before fetching tensors")
            if not isinstance(name, str) or name not in tensors:
                raise KeyError(f"no tensor {name!r} here; available: {sorted(tensors)}")
            array = _slice(to_numpy(tensors[name]), msg.get("slice"))
            desc, data = array_to_payload(array)
            if len(data) > self.max_payload:
                raise ValueError(
                    f"{name} is {len(data)} bytes, over the {self.max_payload}-byte limit; "
                    "fetch a slice"
                )
        except (ValueError, KeyError, TypeError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            client.send({"id": rid, "ok": False, "error": str(message)})
            return
        client.send({"id": rid, "ok": True, "name": name, **desc}, data)
