"""TFRecord framing of event files: writing, and incremental reading that survives a tail.

A record is ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``,
little-endian. A record cut short at the end of a file (the writer is still writing it, or the
process was killed) is not an error: the reader stops before it and picks it up on its next
poll. A checksum mismatch is reported with the file and offset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import crc32c

from ..errors import CorruptRecordError

__all__ = ["RecordReader", "encode_record", "encode_records", "masked_crc"]

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


_pack_u64 = struct.Struct("<Q").pack
_pack_u32 = _FOOTER.pack
_crc = crc32c.crc32c
_headers: dict[int, bytes] = {}


def _header(length: int) -> bytes:
    # Records of one kind have a handful of lengths: frame each length once.
    head = _headers.get(length)
    if head is None:
        raw = _pack_u64(length)
        head = raw + _pack_u32(masked_crc(raw))
        if len(_headers) < 4096:
            _headers[length] = head
    return head


def encode_record(data: bytes) -> bytes:
    """Frame one serialized event as a TFRecord."""
    c = _crc(data)
    return (
        _header(len(data)) + data + _pack_u32((((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF)
    )


def encode_records(records: list[bytes]) -> bytes:
    """Frame many serialized events at once (the writer's hot loop, kept inline)."""
    parts: list[bytes] = []
    add = parts.append
    header, crc, pack, delta = _header, _crc, _pack_u32, _MASK_DELTA
    for data in records:
        c = crc(data)
        add(header(len(data)))
        add(data)
        add(pack((((c >> 15) | (c << 17)) + delta) & 0xFFFFFFFF))
    return b"".join(parts)


@dataclass
class RecordReader:
    """Reads records from one file, from ``offset`` on, remembering where it stopped.

    Attributes:
        path: The file.
        offset: Where the next record starts.
    """

    path: str
    offset: int = 0

    def read(self) -> Iterator[tuple[int, bytes]]:
        """Yield ``(offset, data)`` for every complete record after :attr:`offset`, advancing it.

        Raises:
            CorruptRecordError: On a checksum mismatch; :attr:`offset` then points at the bad
                record and the next call skips it if its length was intact.
        """
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            yield from self._read_from(f)

    def _read_from(self, f: BinaryIO) -> Iterator[tuple[int, bytes]]:
        while True:
            header = f.read(12)
            if len(header) < 12:
                return
            length, length_crc = _HEADER.unpack(header)
            if masked_crc(header[:8]) != length_crc:
                raise CorruptRecordError(self.path, self.offset, "length checksum mismatch")
            body = f.read(length + 4)
            if len(body) < length + 4:
                return
            data = body[:length]
            (data_crc,) = _FOOTER.unpack(body[length:])
            start = self.offset
            self.offset += 12 + length + 4
            if masked_crc(data) != data_crc:
                raise CorruptRecordError(self.path, start, "data checksum mismatch")
            yield start, data
