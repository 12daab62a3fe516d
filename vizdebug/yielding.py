"""Handing the GIL back to the training thread from vizdebug's own threads.

vizdebug's worker, writer and sink threads run Python between the training thread's kernels,
and the training thread needs the GIL after every kernel. CPython takes the GIL from a running
thread only when the switch interval (5 ms) has passed, so a training thread that waits for it
waits out the other thread's whole burst. Measured on the Transformer benchmark
(``/benchmarks``): 3 ms of background Python per 15 ms step made the step 1.13-1.20x; the same
work offering the GIL back every ~30 us, 1.04x. So the background threads' loops call
:func:`pause` every :data:`EVERY` items: it costs about a microsecond when nobody waits.
"""

from __future__ import annotations

import time

__all__ = ["EVERY", "pause"]

#: Items of a background loop between two offers of the GIL.
EVERY = 16


def pause() -> None:
    """Offer the GIL to a thread waiting for it (the training thread, usually)."""
    time.sleep(0)
