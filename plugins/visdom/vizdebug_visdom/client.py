"""A small HTTP client for the Visdom server's JSON API, with short timeouts and no retries.

The ``visdom`` package's own ``Visdom`` object prints tracebacks and retries on a dead server,
which is the wrong behaviour inside a training process. This client does one request per call
over a kept-alive connection and raises :class:`VisdomUnreachableError` on any transport
failure; retrying and backing off is the caller's decision.

Endpoints used (see ``visdom/server/handlers/web_handlers.py``): ``/events`` (create or replace a
window), ``/update`` (append to one), ``/win_exists``, ``/win_data``, ``/env_state`` (a cheap
probe), ``/save`` and ``/close``.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
from typing import Any
from urllib.parse import urlsplit

from vizdebug.errors import VizdebugError

__all__ = [
    "DEFAULT_SERVER",
    "ENV_SERVER",
    "VisdomClient",
    "VisdomRequestError",
    "VisdomUnreachableError",
    "to_json",
]

DEFAULT_SERVER = "http://localhost:8097"
ENV_SERVER = "VIZDEBUG_VISDOM_SERVER"

START_HINT = (
    'start one with: python -c "from visdom.server.run_server import main; main()" '
    "-port 8097 (works offline; `python -m visdom.server` needs the internet), or pass --server"
)


class VisdomUnreachableError(VizdebugError, ConnectionError):
    """The Visdom server did not answer (refused, reset or timed out)."""


class VisdomRequestError(VizdebugError):
    """The Visdom server answered a request with an error status (it is up, the request failed).

    Attributes:
        status: The HTTP status.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _clean(value: Any) -> Any:
    # JSON has no NaN/Infinity: browsers' JSON.parse rejects them. Plotly draws null as a gap.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def to_json(payload: dict[str, Any]) -> bytes:
    """Encode a request body as strict JSON (non-finite floats become null).

    Raises:
        TypeError: The payload holds something JSON cannot encode.
    """
    try:
        return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
    except ValueError:
        return json.dumps(_clean(payload), allow_nan=False, separators=(",", ":")).encode()


class VisdomClient:
    """Talks to one Visdom server.

    Args:
        server: ``http[s]://host:port[/base_url]``.
        timeout: Seconds a connect or a read may take before the call fails.

    Raises:
        ValueError: ``server`` is not an http(s) URL with a host.
    """

    def __init__(self, server: str, *, timeout: float = 2.0) -> None:
        parts = urlsplit(server if "://" in server else f"http://{server}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"Visdom server must be an http(s) URL like {DEFAULT_SERVER}, got {server!r}"
            )
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.server = server
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        try:
            self._port = parts.port or (443 if self._https else 80)
        except ValueError as exc:
            raise ValueError(f"bad port in Visdom server URL {server!r}") from exc
        self._base = parts.path.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None
        #: Requests sent and bytes sent, for benchmarks and status.
        self.requests = 0
        self.bytes_sent = 0

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        """Close the kept-alive connection (the next call opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post(self, path: str, payload: dict[str, Any]) -> str:
        """POST a JSON body and return the response text.

        Raises:
            VisdomUnreachableError: Connection refused, reset or timed out.
            VisdomRequestError: The server answered with a non-2xx status.
        """
        body = to_json(payload)
        url = f"{self._base}{path}"
        headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request("POST", url, body=body, headers=headers)
                response = conn.getresponse()
                text = response.read().decode("utf-8", "replace")
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                # A kept-alive connection the server closed while idle: reconnect once.
                if attempt == 0:
                    continue
                raise VisdomUnreachableError(self._describe(exc)) from exc
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise VisdomUnreachableError(self._describe(exc)) from exc
            self.requests += 1
            self.bytes_sent += len(body)
            if response.status >= 300:
                self.close()
                raise VisdomRequestError(
                    f"Visdom server at {self.server} answered {path} with HTTP "
                    f"{response.status}: {text[:200]}",
                    response.status,
                )
            return text
        raise AssertionError("unreachable")  # pragma: no cover

    def _describe(self, exc: BaseException) -> str:
        reason = "timed out" if isinstance(exc, socket.timeout | TimeoutError) else str(exc)
        return f"no Visdom server answers at {self.server} ({reason or type(exc).__name__})"

    # -- the endpoints ---------------------------------------------------------------------

    def ping(self) -> list[str]:
        """The names of the server's environments; raises if the server does not answer."""
        result = json.loads(self.post("/env_state", {}) or "[]")
        return [str(e) for e in result] if isinstance(result, list) else []

    def create(self, payload: dict[str, Any]) -> str:
        """Create or replace a window (``/events``); returns its id."""
        return self.post("/events", payload)

    def update(self, payload: dict[str, Any]) -> str:
        """Append to (or update) a window (``/update``); returns the server's answer."""
        return self.post("/update", payload)

    def exists(self, env: str, win: str) -> bool:
        """Whether a window exists in an environment."""
        return self.post("/win_exists", {"eid": env, "win": win}).strip() == "true"

    def window_data(self, env: str, win: str) -> dict[str, Any]:
        """The server's JSON of one window (its ``content`` holds plot data and layout)."""
        data = json.loads(self.post("/win_data", {"eid": env, "win": win}))
        return data if isinstance(data, dict) else {}

    def env_data(self, env: str) -> dict[str, Any]:
        """Every window of an environment, by id."""
        data = json.loads(self.post("/win_data", {"eid": env, "win": None}))
        return data if isinstance(data, dict) else {}

    def save(self, env: str) -> None:
        """Ask the server to save an environment to its ``env_path``."""
        self.post("/save", {"data": [env]})

    def close_window(self, env: str, win: str | None = None) -> None:
        """Close one window, or every window of the environment when ``win`` is None."""
        self.post("/close", {"eid": env, "win": win})
