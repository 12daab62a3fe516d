"""What the writer's queue holds besides events, and what each queued item is counted as.

The calling thread of a :class:`~vizdebug.writer.Writer` appends, and the writer thread drains:
packed scalars (``(tag, value, step, wall_time)`` tuples, :data:`SCALAR_BYTES` each), ready
events (:data:`EVENT_BYTES` each), :class:`Deferred` items an adapter hands over (their own
``nbytes``), :class:`SnapshotRequest` items (the bytes of their tensors) and
:class:`FlushRequest` markers (free). The byte estimates are what the queue's memory bound
counts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from .batch import PackedScalar, StatsBlock
from .events import Event

__all__ = ["EVENT_BYTES", "SCALAR_BYTES", "Deferred", "FlushRequest", "SnapshotRequest"]

#: Bytes a queued scalar is counted as.
SCALAR_BYTES = 96
#: Bytes a queued event is counted as.
EVENT_BYTES = 512


class Deferred(Protocol):
    """Work an adapter hands to the writer thread (for example a device-to-host copy).

    ``resolve`` runs on the writer thread and returns the events (a step's tensor statistics
    as one :class:`~vizdebug.batch.StatsBlock`); ``nbytes`` is what the item holds in memory
    while queued. An item may also declare ``wait_for_room`` (seconds, or None for as long as
    the writer thread runs): the queue applies back-pressure to it instead of dropping it (see
    :meth:`vizdebug.writer.Writer.defer`).
    """

    nbytes: int

    def resolve(self, run: str, rank: int) -> Iterable[Event | PackedScalar | StatsBlock]:
        """Produce the events (scalars may come packed, as ``(tag, value, step, wall_time)``)."""
        ...


class SnapshotRequest:
    """Tensors to save as a safetensors file on the writer thread."""

    __slots__ = ("nbytes", "reason", "relpath", "step", "tensors", "wall_time")

    def __init__(
        self, tensors: Mapping[str, Any], step: int, reason: str, relpath: str, wall: float
    ) -> None:
        self.tensors = dict(tensors)
        self.step = step
        self.reason = reason
        self.relpath = relpath
        self.wall_time = wall
        self.nbytes = sum(int(getattr(t, "nbytes", 0) or 0) for t in self.tensors.values())


class FlushRequest:
    """A flush marker: set once what came before it is dispatched, with one ack per sink."""

    __slots__ = ("acks", "dispatched")

    def __init__(self) -> None:
        self.dispatched = threading.Event()
        self.acks: list[threading.Event] = []
