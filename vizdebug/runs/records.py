"""TFRecord framing of event files: writing, and incremental reading that survives a tail.

A record is ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``,
little-endian. A record cut short at the end of a file (the writer is still writing it, or the
process was killed) is not an error: the reader stops before it and picks it up on its next
poll. A checksum mismatch is reported with the file and offset.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from typing import BinaryIO

import crc32c

from ..errors import CorruptRecordError
from .problems import open_regular

__all__ = [
    "MAX_RECORD_BYTES",
    "FileReplacedError",
    "RecordReader",
    "encode_record",
    "encode_records",
    "masked_crc",
]

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


#: The longest record a reader accepts. vizdebug's largest records (one step's statistics of
#: every tensor of a big model) are tens of MB; a longer length whose checksum happens to
#: match is damage, and reading it would take that much memory.
MAX_RECORD_BYTES = 512 << 20
_SCAN_CHUNK = 1 << 20
_ZERO4 = b"\0" * 4
_ZERO12 = b"\0" * 12
_NONZERO = re.compile(rb"[^\x00]")


class FileReplacedError(CorruptRecordError):
    """The file was rewritten under the same name (a new inode, shorter, or a new start)."""


class RecordReader:
    """Reads records from one file, from ``offset`` on, remembering where it stopped.

    Total: a record cut short at the end is left for the next call; a damaged header (its
    length checksum fails, or the length is absurd) is reported once and reading resumes at
    the next intact record, found by scanning for a header whose checksums hold; a damaged
    body is reported and skipped. A file rewritten under the same name is noticed and read
    again from its start.

    Attributes:
        path: The file.
        offset: Where the next record starts.
    """

    def __init__(self, path: str, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._scanning = False  # after a damaged header: looking for the next intact one
        self._ident: tuple[int, int] | None = None
        self._head = b""

    @property
    def scanning(self) -> bool:
        """Whether a damaged header was met and no intact record found after it yet."""
        return self._scanning

    def read(self) -> Iterator[tuple[int, bytes]]:
        """Yield ``(offset, data)`` for every complete record after :attr:`offset`, advancing it.

        Raises:
            CorruptRecordError: On damage; :attr:`offset` then already points past it, so the
                next call goes on reading.
            FileReplacedError: The file was rewritten; :attr:`offset` is back at 0.
            OSError: The file cannot be opened or is not a regular file.
        """
        with open_regular(self.path) as f:
            st = os.fstat(f.fileno())
            self._check_identity(f, st.st_dev, st.st_ino, st.st_size)
            yield from self._read_from(f, st.st_size)

    def _check_identity(self, f: BinaryIO, dev: int, ino: int, size: int) -> None:
        head = os.pread(f.fileno(), 64, 0)
        if self._ident is None:
            self._ident, self._head = (dev, ino), head
            return
        known = self._head
        same = (dev, ino) == self._ident and size >= self.offset and head[: len(known)] == known
        self._ident, self._head = (dev, ino), head
        if not same:
            self.offset, self._scanning = 0, False
            raise FileReplacedError(
                self.path,
                0,
                "the file was rewritten under the same name; read again from its start",
            )

    def _read_from(self, f: BinaryIO, size: int) -> Iterator[tuple[int, bytes]]:
        while True:
            if self._scanning:
                found = self._scan(f, self.offset, size)
                if found is None:
                    return
                self.offset, self._scanning = found, False
            if self.offset + 12 > size:
                return
            f.seek(self.offset)
            header = f.read(12)
            if len(header) < 12:
                return
            length, length_crc = _HEADER.unpack(header)
            if masked_crc(header[:8]) != length_crc or length > MAX_RECORD_BYTES:
                bad = self.offset
                reason = (
                    "record header damaged (length checksum mismatch)"
                    if masked_crc(header[:8]) != length_crc
                    else f"record length {length} over the {MAX_RECORD_BYTES >> 20} MiB limit"
                )
                self.offset, self._scanning = bad + 1, True
                raise CorruptRecordError(
                    self.path, bad, f"{reason}; reading resumes at the next intact record"
                )
            if self.offset + 12 + length + 4 > size:
                return  # cut short: being written, or the writer was killed
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

    def _scan(self, f: BinaryIO, start: int, size: int) -> int | None:
        """The offset of the next intact header at or after ``start``; None if none yet.

        A length under 4 GiB has four zero high bytes, so only the places where four zero
        bytes follow are tried; a stretch of zeros (twelve zero bytes are never a header) is
        skipped to its last eleven bytes, so a zero-filled megabyte costs one search.
        """
        pos = start
        while pos + 12 <= size:
            f.seek(pos)
            buf = f.read(min(_SCAN_CHUNK, size - pos))
            i = 0
            while True:
                j = buf.find(_ZERO4, i + 4)
                if j < 0 or j + 8 > len(buf):
                    break
                p = j - 4
                if buf.startswith(_ZERO12, p):
                    nonzero = _NONZERO.search(buf, p)
                    end = nonzero.start() if nonzero else len(buf)
                    i = max(p + 1, end - 11)
                    continue
                length, length_crc = _HEADER.unpack_from(buf, p)
                if (
                    length <= MAX_RECORD_BYTES
                    and masked_crc(buf[p : p + 8]) == length_crc
                    and self._body_ok(f, pos + p, length, size)
                ):
                    return pos + p
                i = p + 1
            if pos + len(buf) >= size:
                break
            pos += max(len(buf) - 11, 1)
        # Nothing yet: a later call goes on from the last place a header could still start.
        self.offset = max(start, size - 11)
        return None

    def _body_ok(self, f: BinaryIO, at: int, length: int, size: int) -> bool:
        if at + 12 + length + 4 > size:
            return True  # a plausible record still being written
        data = os.pread(f.fileno(), length + 4, at + 12)
        (data_crc,) = _FOOTER.unpack(data[length:])
        return bool(masked_crc(data[:length]) == data_crc)
