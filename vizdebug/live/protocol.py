"""The live channel's wire format: JSON headers with optional raw binary payloads. No pickle.

A frame is::

    uint32 big-endian  header length H  (at most MAX_HEADER)
    H bytes            UTF-8 JSON object; "nbytes": N when a payload follows (at most MAX_PAYLOAD)
    N bytes            raw payload (tensor data: C-order, little-endian, dtype named in the header)

Requests carry ``"id"`` and ``"op"``; replies carry the same ``"id"`` and ``"ok"``; messages the
server sends on its own (``"event": "paused"`` ...) have no ``"id"``.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import VizdebugError

__all__ = [
    "MAX_HEADER",
    "MAX_PAYLOAD",
    "ProtocolError",
    "array_from_payload",
    "array_to_payload",
    "encode_frame",
    "read_frame",
]

MAX_HEADER = 1 << 20
MAX_PAYLOAD = 256 << 20
_LEN = struct.Struct(">I")
_DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"}


class ProtocolError(VizdebugError):
    """A malformed, oversized or unexpected message on the live channel.

    Attributes:
        recoverable: Whether the stream is still at a frame boundary (the connection can go on).
    """

    def __init__(self, message: str, *, recoverable: bool = True) -> None:
        super().__init__(message)
        self.recoverable = recoverable


def encode_frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """Serialize one frame."""
    if payload:
        header = {**header, "nbytes": len(payload)}
    body = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if len(body) > MAX_HEADER:
        raise ProtocolError(f"header of {len(body)} bytes exceeds the {MAX_HEADER}-byte limit")
    return _LEN.pack(len(body)) + body + payload


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(
    sock: socket.socket, *, max_payload: int = MAX_PAYLOAD
) -> tuple[dict[str, Any], bytes]:
    """Read one frame.

    Raises:
        ConnectionError: The peer went away.
        ProtocolError: The frame is malformed or too large. After an oversized header the
            stream cannot be resynchronized and the caller should close the connection.
    """
    (size,) = _LEN.unpack(_recv_exact(sock, 4))
    if size > MAX_HEADER:
        raise ProtocolError(
            f"header of {size} bytes exceeds the {MAX_HEADER}-byte limit", recoverable=False
        )
    raw = _recv_exact(sock, size)
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header must be a JSON object")
    nbytes = header.get("nbytes", 0)
    if not isinstance(nbytes, int) or nbytes < 0:
        raise ProtocolError("nbytes must be a non-negative integer")
    if nbytes > max_payload:
        raise ProtocolError(
            f"payload of {nbytes} bytes exceeds the {max_payload}-byte limit", recoverable=False
        )
    payload = _recv_exact(sock, nbytes) if nbytes else b""
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
    if dtype not in _DTYPES or not isinstance(shape, list):
        raise ProtocolError(f"bad tensor description: dtype={dtype!r} shape={shape!r}")
    arr = np.frombuffer(payload, dtype=np.dtype(dtype).newbyteorder("<"))
    expected = int(np.prod(shape)) if shape else 1
    if arr.size != expected:
        raise ProtocolError(f"payload holds {arr.size} values, shape {shape} needs {expected}")
    return arr.reshape(shape)
