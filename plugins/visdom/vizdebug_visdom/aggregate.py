"""Sink-side buffering and aggregation, so a browser never gets thousands of points a second.

Points wait in a :class:`PointBuffer` (bounded; what does not fit is counted, never queued)
until the sink sends; each send takes at most ``max_points`` points per line, averaging runs of
consecutive points into one when there are more (visdom#650: a Visdom page slows to a crawl when
every step appends its own point).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator

__all__ = ["PointBuffer", "Points", "decimate"]

#: The x and y values of one line, in order.
Points = tuple[list[float], list[float]]


def decimate(xs: list[float], ys: list[float], max_points: int) -> Points:
    """Reduce a line to at most ``max_points`` points.

    Consecutive points are grouped into ``max_points`` runs of (nearly) equal length; each run
    becomes one point at its last x with the mean of its finite y values (NaN when it has none,
    so a gap stays visible).

    Args:
        xs, ys: The line, same length.
        max_points: The most points to return (at least 1).

    Raises:
        ValueError: ``max_points`` is less than 1.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    n = len(xs)
    if n <= max_points:
        return xs, ys
    out_x: list[float] = []
    out_y: list[float] = []
    start = 0
    for i in range(1, max_points + 1):
        end = (i * n) // max_points
        if end <= start:
            continue
        total, count = 0.0, 0
        for y in ys[start:end]:
            if math.isfinite(y):
                total += y
                count += 1
        out_x.append(xs[end - 1])
        out_y.append(total / count if count else math.nan)
        start = end
    return out_x, out_y


class PointBuffer:
    """Points waiting to be sent, grouped by window and line, bounded in total.

    Args:
        max_points: Points held at most.
        compact_to: When the buffer is full, lines longer than this are first averaged down
            to half their length (not below ``compact_to``): the sender would average them
            anyway, so a long wait for a server costs resolution, not coverage. Only points
            that still do not fit are dropped and counted in :attr:`dropped`. None: no
            compaction (every point is kept or counted as dropped).
    """

    def __init__(self, max_points: int, *, compact_to: int | None = None) -> None:
        if max_points < 1:
            raise ValueError(f"max_points must be at least 1, got {max_points}")
        self.max_points = max_points
        self.compact_to = compact_to
        #: Points that did not fit, since the sink started.
        self.dropped = 0
        #: Points merged into averages to make room, since the sink started.
        self.compacted = 0
        self._count = 0
        self._exhausted = False
        self._windows: dict[Hashable, dict[str, Points]] = {}

    def __len__(self) -> int:
        return self._count

    def add(self, window: Hashable, line: str, x: float, y: float) -> bool:
        """Buffer one point; returns False (and counts it) when the buffer is full."""
        if self._count >= self.max_points and not self._compact():
            self.dropped += 1
            return False
        lines = self._windows.get(window)
        if lines is None:
            lines = self._windows[window] = {}
        points = lines.get(line)
        if points is None:
            points = lines[line] = ([], [])
        points[0].append(x)
        points[1].append(y)
        self._count += 1
        return True

    def _compact(self) -> bool:
        floor = self.compact_to
        if floor is None or self._exhausted:
            return False
        before = self._count
        for lines in self._windows.values():
            for name, (xs, ys) in list(lines.items()):
                if len(xs) > floor:
                    lines[name] = decimate(xs, ys, max(floor, len(xs) // 2))
                    self._count -= len(xs) - len(lines[name][0])
        self.compacted += before - self._count
        # Nothing left to average: do not scan again until a take() makes room.
        self._exhausted = self._count >= self.max_points
        return not self._exhausted

    def windows(self) -> Iterator[Hashable]:
        """The windows that have points waiting (a snapshot, safe to modify the buffer)."""
        return iter(list(self._windows))

    def take(self, window: Hashable, max_points: int | None = None) -> dict[str, Points]:
        """Remove and return a window's points by line, each decimated to ``max_points``."""
        lines = self._windows.pop(window, {})
        for points in lines.values():
            self._count -= len(points[0])
        self._exhausted = False
        if max_points is None:
            return lines
        return {name: decimate(xs, ys, max_points) for name, (xs, ys) in lines.items()}

    def restore(self, window: Hashable, lines: dict[str, Points]) -> None:
        """Put back what :meth:`take` returned (a send failed), ahead of newer points.

        Restored points are not bounded: they were admitted once already.
        """
        current = self._windows.get(window, {})
        merged: dict[str, Points] = {}
        for name, (xs, ys) in lines.items():
            newer = current.pop(name, ([], []))
            merged[name] = (xs + newer[0], ys + newer[1])
            self._count += len(xs)
        merged.update(current)
        self._windows[window] = merged
