"""Exceptions vizdebug raises; every message says what to do."""

from __future__ import annotations

__all__ = [
    "CorruptRecordError",
    "RunNotFoundError",
    "SinkNotFoundError",
    "VizdebugError",
    "WriterClosedError",
]


class VizdebugError(Exception):
    """Base class of vizdebug's own errors."""


class RunNotFoundError(VizdebugError, FileNotFoundError):
    """A path holds no run (no event files)."""


class SinkNotFoundError(VizdebugError, ValueError):
    """A sink name matches no built-in sink and no ``vizdebug.sinks`` entry point."""


class WriterClosedError(VizdebugError, RuntimeError):
    """An event was written to a closed writer."""


class CorruptRecordError(VizdebugError):
    """An event-file record failed its checksum or could not be decoded.

    Attributes:
        path: The event file.
        offset: Byte offset of the bad record.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: corrupt record at byte {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason
