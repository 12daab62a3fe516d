"""The sink extension point.

A sink is any object with ``write(events)``, ``flush()`` and ``close()`` (:class:`Sink`); it
does not inherit from anything. Third-party packages register a factory under the entry-point
group ``vizdebug.sinks``::

    [project.entry-points."vizdebug.sinks"]
    mysink = "mypackage:make_sink"      # make_sink(context: SinkContext) -> Sink

and users turn it on with ``Writer(sinks=["mysink"])`` or ``VIZDEBUG_SINKS=mysink``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol, runtime_checkable

from .errors import SinkNotFoundError
from .events import Event

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_SINKS",
    "Sink",
    "SinkContext",
    "SinkFactory",
    "available_sinks",
    "create_sinks",
    "sink_name",
]

ENTRY_POINT_GROUP = "vizdebug.sinks"
ENV_SINKS = "VIZDEBUG_SINKS"


@runtime_checkable
class Sink(Protocol):
    """Receives batches of events on the writer's sink thread, never on the training thread."""

    def write(self, events: Sequence[Event]) -> None:
        """Consume a batch of events (in enqueue order)."""

    def flush(self) -> None:
        """Make what was written durable or visible."""

    def close(self) -> None:
        """Release resources; no call follows."""


@dataclass(frozen=True)
class SinkContext:
    """What a sink factory knows about the run it serves."""

    run: str
    run_dir: Path
    rank: int
    world_size: int


SinkFactory = Callable[[SinkContext], Sink]


def sink_name(sink: object) -> str:
    """A sink's display name: its ``name`` attribute, else its class name."""
    name = getattr(sink, "name", None)
    return name if isinstance(name, str) and name else type(sink).__name__


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_sinks() -> list[str]:
    """Names of the sinks registered through entry points."""
    return sorted(_entry_points())


def _names_from_env() -> list[str]:
    raw = os.environ.get(ENV_SINKS, "")
    return [part.strip() for part in raw.split(",") if part.strip()]


def create_sinks(spec: Sequence[str | Sink] | None, context: SinkContext) -> list[Sink]:
    """Instantiate the extra sinks named by ``spec`` (or ``$VIZDEBUG_SINKS`` when None).

    Args:
        spec: Sink names, ready sink objects, or None.
        context: Passed to every factory.

    Raises:
        SinkNotFoundError: A name is not registered.
        TypeError: An entry is neither a name nor an object with write/flush/close.
    """
    items: Sequence[str | Sink] = _names_from_env() if spec is None else spec
    if isinstance(items, str):
        raise TypeError(f"sinks must be a list of names or sink objects, not the string {items!r}")
    registry: dict[str, metadata.EntryPoint] | None = None
    sinks: list[Sink] = []
    for item in items:
        if isinstance(item, str):
            if registry is None:
                registry = _entry_points()
            if item not in registry:
                known = ", ".join(sorted(registry)) or "none installed"
                raise SinkNotFoundError(
                    f"unknown sink {item!r} (registered sinks: {known}); install the package "
                    f"that provides it or fix ${ENV_SINKS}"
                )
            factory: SinkFactory = registry[item].load()
            sinks.append(factory(context))
        elif isinstance(item, Sink):
            sinks.append(item)
        else:
            raise TypeError(
                f"a sink needs write(), flush() and close() methods; got {type(item).__name__}"
            )
    return sinks
