"""vizdebug's Visdom sink: live windows on a Visdom server (entry point ``vizdebug.sinks``)."""

from __future__ import annotations

from .client import VisdomClient, VisdomRequestError, VisdomUnreachableError
from .sink import VisdomSink, VisdomStatus, make_sink

__all__ = [
    "VisdomClient",
    "VisdomRequestError",
    "VisdomSink",
    "VisdomStatus",
    "VisdomUnreachableError",
    "make_sink",
]
