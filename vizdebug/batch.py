"""The batch of events a sink receives: scalars stay packed until a sink looks at them.

Most events a run writes are scalars. The run-directory sink encodes them straight from their
packed form (:meth:`EventBatch.raw`); any other sink that indexes or iterates the batch gets
ordinary frozen :class:`~vizdebug.events.Scalar` events, built once and shared.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import overload

from .events import Event, make_scalar

__all__ = ["EventBatch", "PackedScalar"]

#: A scalar before it becomes an event: ``(tag, value, step, wall_time)``.
PackedScalar = tuple[str, float, int, float]


class EventBatch(Sequence[Event]):
    """An immutable sequence of events, some of them still packed scalars.

    Args:
        items: Events and packed scalars, in order.
        run, rank: Stamped on the scalars when they are unpacked.
    """

    __slots__ = ("_events", "_items", "_lock", "rank", "run")

    def __init__(self, items: list[Event | PackedScalar], run: str, rank: int) -> None:
        self._items = items
        self._events: list[Event] | None = None
        self._lock = threading.Lock()
        self.run = run
        self.rank = rank

    def raw(self) -> list[Event | PackedScalar]:
        """The items as queued: events, and scalars as ``(tag, value, step, wall_time)``."""
        return self._items

    def events(self) -> list[Event]:
        """Every item as an event (built on first use, then shared by all sinks)."""
        events = self._events
        if events is None:
            with self._lock:
                if self._events is None:
                    run, rank = self.run, self.rank
                    built: list[Event] = []
                    for i in self._items:
                        if isinstance(i, tuple):
                            built.append(make_scalar(i[2], i[3], run, rank, i[0], i[1]))
                        else:
                            built.append(i)
                    self._events = built
                events = self._events
        return events

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        return self.events()[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events())
