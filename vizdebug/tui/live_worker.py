"""Blocking live-channel calls for the TUI's worker threads (never call these on the UI thread).

:func:`pump_events` turns the client's ``events`` queue into calls of a callback (the screen
posts them as Textual messages); :func:`fetch_tensor` fetches a tensor, falling back to a
slice of its first rows when it is over the server's payload limit.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

import numpy.typing as npt

from ..live import LiveClient, LiveError

__all__ = ["FETCH_ROWS", "fetch_tensor", "pump_events"]

#: Rows fetched when a tensor is too large to fetch whole.
FETCH_ROWS = 64


def pump_events(
    client: LiveClient,
    post: Callable[[dict[str, Any]], object],
    stop: Callable[[], bool],
    *,
    poll: float = 0.2,
) -> None:
    """Forward the client's server messages to ``post`` until disconnected or ``stop()``.

    Ends after posting ``{"event": "disconnected"}`` (the client's own, or one made up if the
    connection closed without it).
    """
    while not stop():
        try:
            event = client.events.get(timeout=poll)
        except queue.Empty:
            if client.closed and client.events.empty():
                post({"event": "disconnected"})
                return
            continue
        post(event)
        if event.get("event") == "disconnected":
            return


def _over_limit(exc: Exception) -> bool:
    return "limit" in str(exc)


def fetch_tensor(
    client: LiveClient, name: str, *, rows: int = FETCH_ROWS
) -> tuple[npt.NDArray[Any], str]:
    """Fetch ``name`` whole, or its first ``rows`` rows if it is over the payload limit.

    The server does not report sizes before a fetch, so a refused whole fetch is retried with
    ``[[0, rows]]``, then ``[0, [0, rows]]`` and so on (index 0 of the leading dimensions).

    Returns:
        The array and a note saying which slice it is ("" when whole).

    Raises:
        LiveError: The server refused, or no slice fits.
        OSError: The connection broke while sending.
    """
    try:
        return client.fetch(name), ""
    except LiveError as exc:
        if not _over_limit(exc):
            raise
        first = exc
    for depth in range(1, 5):
        index: list[Any] = [0] * (depth - 1) + [[0, rows]]
        try:
            array = client.fetch(name, index)
        except LiveError as exc:
            if _over_limit(exc):
                continue
            break  # e.g. more slice entries than dimensions
        shown = ", ".join("0" if i == 0 else f"0:{rows}" for i in index)
        return array, f"{name} is over the live channel's size limit; fetched [{shown}]"
    raise first
