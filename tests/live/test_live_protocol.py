"""The wire format's limits, on a real socket pair: what a frame may make the reader buffer."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from vizdebug.live.protocol import (
    HELLO_MAX_HEADER,
    MAX_DEPTH,
    ProtocolError,
    decode_header,
    encode_frame,
    read_frame,
)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"a": NaN}', "finite"),
        (b'{"a": Infinity}', "finite"),
        (b'{"a": -Infinity}', "finite"),
        (b'{"a": 1e999}', "finite"),
        (b'{"a": [0, {"b": -1e400}]}', "finite"),
        (b'{"a": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}", "nests"),
        (b"[" * 100_000, "nests"),
        (b"[1, 2]", "object"),
        (b'"hello"', "object"),
        (b"\xff\xfe", "not JSON"),
        (b'{"a": 1' + b"0" * 5000 + b"}", "not JSON"),  # over Python's int digit limit
    ],
)
def test_hostile_headers_are_protocol_errors(raw: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_header(raw)


def test_brackets_in_strings_and_big_integers_are_fine() -> None:
    assert decode_header(b'{"name": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}')["name"].startswith("[")
    assert decode_header(b'{"step": 1' + b"0" * 400 + b"}")["step"] == 10**400


def test_an_oversized_first_frame_is_refused_after_four_bytes() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack(">I", 255 << 20) + b"x" * 1000)
        with pytest.raises(ProtocolError, match="4096-byte limit") as info:
            read_frame(b, max_header=HELLO_MAX_HEADER, max_payload=0)
        assert not info.value.recoverable
        assert len(b.recv(2000)) == 1000  # nothing past the length prefix was read


def test_a_payload_where_none_is_allowed_is_refused_unread() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(encode_frame({"op": "hello"}, b"y" * 100))
        with pytest.raises(ProtocolError, match="0-byte limit") as info:
            read_frame(b, max_payload=0)
        assert not info.value.recoverable
        assert b.recv(1000) == b"y" * 100


def test_a_dripping_peer_hits_the_deadline() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack(">I", 100) + b"{")  # and nothing more
        with pytest.raises(TimeoutError):
            read_frame(b, deadline=time.monotonic() + 0.3)


def test_encode_refuses_non_finite_numbers() -> None:
    with pytest.raises(ProtocolError, match="cannot encode"):
        encode_frame({"value": float("inf")})
