"""What readers report instead of raising, and how they open files they did not write.

Readers are total: whatever bytes a run directory holds, they return what they could read
plus :class:`ReadProblem` entries naming file, offset and reason. :func:`open_regular` is the
one way they open a file: special files (FIFOs, devices, sockets, a link to ``/dev/zero``)
are refused by type before a byte is read, so a reader never blocks on a FIFO or reads an
endless device.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["NotRegularFileError", "ReadProblem", "open_regular", "read_small"]


@dataclass(frozen=True)
class ReadProblem:
    """Something in a run directory that could not be read.

    Attributes:
        path: The file (or directory).
        offset: Byte offset of the damage (0 for a whole file).
        message: Why, in words a user can act on.
    """

    path: str
    offset: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}: byte {self.offset}: {self.message}"


class NotRegularFileError(OSError):
    """A reader was pointed at a FIFO, a device, a socket or a directory, or a file too big."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike[str], *, follow: bool = True) -> BinaryIO:
    """Open a regular file for reading without ever blocking on what it turns out to be.

    The file is opened non-blocking (a FIFO's open would otherwise wait for a writer) and
    checked with ``fstat`` on the open descriptor, so swapping the file for a FIFO between a
    check and the open cannot fool it.

    Args:
        path: The file.
        follow: Follow a symbolic link in the last component (False refuses links).

    Raises:
        NotRegularFileError: The path is not a regular file.
        OSError: The file cannot be opened (missing, permission denied, ...).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"{path} is {_kind(mode)}, not a regular file; skipped")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_small(path: str | os.PathLike[str], limit: int) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes.

    Raises:
        NotRegularFileError: Not a regular file, or larger than ``limit``.
        OSError: It cannot be read.
    """
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise NotRegularFileError(f"{path} is {size} bytes, over the {limit}-byte limit")
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while read
        raise NotRegularFileError(f"{path} is over the {limit}-byte limit")
    return data
