"""What the control server does with an authenticated client's request: one reply each.

Every request gets exactly one reply; anything wrong with it (unknown op, wrong types,
out-of-range numbers, a tensor that is not there) is an ``{"ok": false, "error": ...}`` reply,
never an exception that ends the client's thread.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np

from ..runs.snapshots import to_numpy
from .breaks import MAX_STEP
from .debugger import Debugger
from .protocol import array_to_payload

__all__ = ["CONTROL_OPS", "Handler", "Session", "check_id", "slice_array"]

log = logging.getLogger("vizdebug")

#: Requests only the controlling client may make.
CONTROL_OPS = frozenset({"pause", "continue", "step", "next_step", "run_to", "break", "clear"})
_MAX_ID = 1 << 53
_MAX_ID_CHARS = 64


class Session(Protocol):
    """The client side of a request: is it the controller, may it become one."""

    controller: bool


class RequestError(Exception):
    """A request that gets an error reply."""


def check_id(rid: Any) -> Any:
    """A request id as it may be echoed: null, an integer below 2**53 or a short string.

    Raises:
        RequestError: Anything else.
    """
    if rid is None:
        return None
    if isinstance(rid, int) and not isinstance(rid, bool) and -_MAX_ID < rid < _MAX_ID:
        return rid
    if isinstance(rid, str) and len(rid) <= _MAX_ID_CHARS:
        return rid
    raise RequestError("id must be null, an integer below 2**53 or a string of 64 characters")


def slice_array(array: np.ndarray[Any, Any], spec: Any) -> np.ndarray[Any, Any]:
    """Apply a JSON slice: a list with an int (index), null or [start, stop] per leading dim.

    Raises:
        RequestError: A malformed slice or one out of range.
    """
    if spec is None:
        return array
    if not isinstance(spec, list) or len(spec) > array.ndim:
        raise RequestError(f"slice must be a list of at most {array.ndim} entries")

    def small(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and -MAX_STEP <= v <= MAX_STEP

    index: list[int | slice] = []
    for item in spec:
        if small(item):
            index.append(item)
        elif item is None:
            index.append(slice(None))
        elif isinstance(item, list) and len(item) == 2 and all(v is None or small(v) for v in item):
            index.append(slice(item[0], item[1]))
        else:
            raise RequestError(f"bad slice entry {item!r:.60}: use an int, null or [start, stop]")
    try:
        return np.asarray(array[tuple(index)])
    except (IndexError, OverflowError) as exc:
        raise RequestError(f"slice out of range: {exc}") from None


class Handler:
    """Answers requests about one :class:`~vizdebug.live.debugger.Debugger`.

    Args:
        debugger: The training side's state.
        max_payload: Largest tensor (bytes) sent in one reply.
    """

    def __init__(self, debugger: Debugger, *, max_payload: int) -> None:
        self.debugger = debugger
        self.max_payload = max_payload

    def handle(self, client: Session, msg: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """The reply (and payload) to one request; never raises."""
        rid: Any = None
        try:
            rid = check_id(msg.get("id"))
            return self._dispatch(client, rid, msg)
        except (RequestError, PermissionError, ValueError, TypeError, KeyError) as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            return {"id": rid, "ok": False, "error": str(text)[:2000]}, b""
        except Exception as exc:  # a bug here must not end the client's thread
            log.debug("vizdebug live: request failed", exc_info=True)
            return {"id": rid, "ok": False, "error": f"internal error: {type(exc).__name__}"}, b""

    def _dispatch(
        self, client: Session, rid: Any, msg: dict[str, Any]
    ) -> tuple[dict[str, Any], bytes]:
        op = msg.get("op")
        dbg = self.debugger
        reply: dict[str, Any] = {"id": rid, "ok": True}
        if not isinstance(op, str):
            raise RequestError("op must be a string")
        if op == "status":
            reply.update(dbg.status())
            reply["control"] = client.controller
        elif op == "ping":
            pass
        elif op == "fetch":
            return self._fetch(rid, msg)
        elif op == "control":
            if not client.controller:
                client.controller = dbg.acquire()
            reply["control"] = client.controller
        elif op in CONTROL_OPS:
            if not client.controller:
                raise PermissionError("another client controls this run; you may observe")
            if op == "break":
                bp = dbg.set_break(
                    msg.get("kind"),
                    msg.get("value"),
                    msg.get("module", "*"),
                    once=msg.get("once", False),
                )
                reply["breakpoint"] = bp.to_json()
            elif op == "clear":
                dbg.clear_break(msg.get("break_id"))
            else:
                dbg.command(op, msg.get("step"))
        else:
            raise RequestError(f"unknown op {op[:40]!r}")
        return reply, b""

    def _fetch(self, rid: Any, msg: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        name = msg.get("name")
        tensors = self.debugger.tensors()
        if not self.debugger.paused:
            raise RequestError("training is running: pause it before fetching tensors")
        if not isinstance(name, str) or name not in tensors:
            shown = repr(name)[:80]
            raise RequestError(f"no tensor {shown} here; available: {sorted(tensors)}")
        array = slice_array(to_numpy(tensors[name]), msg.get("slice"))
        desc, data = array_to_payload(array)
        if len(data) > self.max_payload:
            raise RequestError(
                f"{name} is {len(data)} bytes, over the {self.max_payload}-byte limit; "
                "fetch a slice"
            )
        return {"id": rid, "ok": True, "name": name, **desc}, data
