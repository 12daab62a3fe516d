"""Handing the GIL back to the training thread from vizdebug's own threads.

vizdebug's worker, writer and sink threads run Python between the training thread's kernels,
and the training thread needs the GIL after every kernel. CPython takes the GIL from a running
thread only when the switch interval (5 ms) has passed, so a training thread that waits for it
waits out the other thread's whole burst. Measured on the Transformer benchmark
(``/benchmarks``): 3 ms of background Python per 15 ms step made the step 1.13-1.20x; the same
work offering the GIL back every ~30 us, 1.04x. So the background threads' loops walk their
items through :func:`offering`, which calls :func:`pause` every :data:`EVERY` items (about a
microsecond when nobody waits).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["EVERY", "offering", "pause"]

T = TypeVar("T")

#: Items of a background loop between two offers of the GIL.
EVERY = 16


def pause() -> None:
    """Offer the GIL to a thread waiting for it (the training thread, usually)."""
    time.sleep(0)


def offering(items: Iterable[T]) -> Iterator[T]:
    """The items, with :func:`pause` after every :data:`EVERY` of them."""
    for i, item in enumerate(items, 1):
        yield item
        if i % EVERY == 0:
            pause()
