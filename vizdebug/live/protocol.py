"""The live channel's wire format: JSON headers with optional raw binary payloads. No pickle.

A frame is::

    uint32 big-endian  header length H
    H bytes            UTF-8 JSON object; "nbytes": N when a payload follows
    N bytes            raw payload (tensor data: C-order, little-endian, dtype named in the header)

Requests carry ``"id"`` and ``"op"``; replies carry the same ``"id"`` and ``"ok"``; messages the
server sends on its own (``"event": "paused"`` ...) have no ``"id"``.

Sizes are capped per phase (:class:`Limits`): before a client has authenticated its one frame
may be :data:`HELLO_MAX_HEADER` bytes and carry no payload, so a peer without the token can make
the server buffer at most that much; requests after it at most :data:`MAX_HEADER` bytes, never a
payload (clients have nothing to upload); replies (tensors) up to the server's payload limit.
JSON must be strict: ``NaN``/``Infinity`` and nesting deeper than :data:`MAX_DEPTH` are refused.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import VizdebugError

__all__ = [
    "HELLO_MAX_HEADER",
    "MAX_DEPTH",
    "MAX_HEADER",
    "MAX_PAYLOAD",
    "Limits",
    "ProtocolError",
    "array_from_payload",
    "array_to_payload",
    "decode_header",
    "encode_frame",
    "encode_header",
    "read_frame",
]

#: Largest header of the first (unauthenticated) frame: a hello with a 64-hex-digit token fits.
HELLO_MAX_HEADER = 4096
#: Largest header of any later frame.
MAX_HEADER = 1 << 20
#: Default largest payload (a fetched tensor) the server sends and the client accepts.
MAX_PAYLOAD = 256 << 20
#: Deepest nesting of arrays/objects accepted in a header (requests need 3).
MAX_DEPTH = 16
_LEN = struct.Struct(">I")
_DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"}


@dataclass(frozen=True)
class Limits:
    """What one read may buffer.

    Attributes:
        max_header: Largest header accepted.
        max_payload: Largest payload accepted (0: none).
    """

    max_header: int = MAX_HEADER
    max_payload: int = MAX_PAYLOAD


class ProtocolError(VizdebugError):
    """A malformed, oversized or unexpected message on the live channel.

    Attributes:
        recoverable: Whether the stream is still at a frame boundary (the connection can go on).
    """

    def __init__(self, message: str, *, recoverable: bool = True) -> None:
        super().__init__(message)
        self.recoverable = recoverable


def encode_header(header: dict[str, Any], nbytes: int = 0) -> bytes:
    """Serialize a header (length prefix and JSON) announcing ``nbytes`` of payload.

    Raises:
        ProtocolError: The header is over :data:`MAX_HEADER` or holds a non-finite number.
    """
    if nbytes:
        header = {**header, "nbytes": nbytes}
    try:
        body = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError) as exc:
        raise ProtocolError(f"cannot encode the message: {exc}") from None
    if len(body) > MAX_HEADER:
        raise ProtocolError(f"header of {len(body)} bytes exceeds the {MAX_HEADER}-byte limit")
    return _LEN.pack(len(body)) + body


def encode_frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """Serialize one frame (header and payload)."""
    return encode_header(header, len(payload)) + payload


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    chunks = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the peer was too slow")
            sock.settimeout(left)
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed (numbers must be finite)")


def _depth_ok(raw: bytes) -> bool:
    """Whether arrays and objects nest at most :data:`MAX_DEPTH` deep (before parsing, which
    recurses; brackets inside strings do not count)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return True
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def decode_header(raw: bytes) -> dict[str, Any]:
    """Parse a header: a strict JSON object, finite numbers, shallow nesting.

    Raises:
        ProtocolError: Anything else (recoverable: the frame boundary is known).
    """
    if not _depth_ok(raw):
        raise ProtocolError(f"header nests deeper than {MAX_DEPTH} levels")
    try:
        header = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ProtocolError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header must be a JSON object")
    if not _finite(header):  # 1e999 parses as inf
        raise ProtocolError("numbers must be finite")
    return header


def read_frame(
    sock: socket.socket,
    *,
    max_payload: int = MAX_PAYLOAD,
    max_header: int = MAX_HEADER,
    deadline: float | None = None,
) -> tuple[dict[str, Any], bytes]:
    """Read one frame, buffering at most ``max_header`` + ``max_payload`` bytes.

    Args:
        sock: The connection.
        max_payload: Largest payload accepted.
        max_header: Largest header accepted.
        deadline: ``time.monotonic()`` by which the whole frame must have arrived (None: the
            socket's own timeout applies to each read).

    Raises:
        ConnectionError: The peer went away.
        TimeoutError: The deadline (or the socket's timeout) passed.
        ProtocolError: The frame is malformed or too large. After an oversized header or
            payload the stream cannot be resynchronized and the caller should close it.
    """
    (size,) = _LEN.unpack(_recv_exact(sock, 4, deadline))
    if size > max_header:
        raise ProtocolError(
            f"header of {size} bytes exceeds the {max_header}-byte limit", recoverable=False
        )
    raw = _recv_exact(sock, size, deadline)
    try:
        header = decode_header(raw)
    except ProtocolError:
        # the frame's payload length is unknown: the stream is only in sync without one
        if b'"nbytes"' in raw:
            raise ProtocolError(
                "malformed header announcing a payload", recoverable=False
            ) from None
        raise
    nbytes_seen = header.get("nbytes", 0)
    if not isinstance(nbytes_seen, int) or isinstance(nbytes_seen, bool) or nbytes_seen < 0:
        raise ProtocolError("nbytes must be a non-negative integer", recoverable=False)
    if nbytes_seen > max_payload:
        raise ProtocolError(
            f"payload of {nbytes_seen} bytes exceeds the {max_payload}-byte limit",
            recoverable=False,
        )
    payload = _recv_exact(sock, nbytes_seen, deadline) if nbytes_seen else b""
    return header, payload


def array_to_payload(array: npt.NDArray[Any]) -> tuple[dict[str, Any], bytes]:
    """Describe and serialize an array (bfloat16 and other exotic dtypes go as float32)."""
    arr = np.asarray(array)
    if arr.dtype.name not in _DTYPES:
        arr = arr.astype(np.float32)
    arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False))
    return {"dtype": arr.dtype.name, "shape": list(arr.shape)}, arr.tobytes()


def array_from_payload(header: dict[str, Any], payload: bytes) -> npt.NDArray[Any]:
    """Inverse of :func:`array_to_payload`.

    Raises:
        ProtocolError: Unknown dtype or a payload that does not match the shape.
    """
    dtype = header.get("dtype")
    shape = header.get("shape")
    if (
        dtype not in _DTYPES
        or not isinstance(shape, list)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise ProtocolError(f"bad tensor description: dtype={dtype!r} shape={shape!r}")
    arr = np.frombuffer(payload, dtype=np.dtype(str(dtype)).newbyteorder("<"))
    expected = math.prod(shape)
    if arr.size != expected:
        raise ProtocolError(f"payload holds {arr.size} values, shape {shape} needs {expected}")
    return arr.reshape(shape)
