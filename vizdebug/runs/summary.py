"""One line of facts per run, for ``vizdebug runs``, ``vizdebug show`` and run pickers.

Every view counts a run the same way (the project's shared definition):

- **steps** = 1 + the highest training-step index seen in the run's event files (steps are the
  0-based training steps the user counts). Run-info records do not count: the writer stamps the
  one it writes at close with its *next* step, which is how a 4-step run used to say "steps 5".
- **recorded** = the number of distinct steps that have statistics rows.
- A file that could not be read whole is a warning, shown wherever the counts are.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..batch import StatsBlock
from ..events import Anomaly, Event, ModelStructure, RunInfo, TensorStats
from .layout import read_info
from .reader import Run, RunReader, is_event_file

__all__ = [
    "Counts",
    "RunSummary",
    "count_events",
    "dropped_by_kind",
    "dropped_text",
    "is_pid_alive",
    "read_warnings",
    "summarize",
]

#: Records that are not a training step's data: run info is stamped with the writer's next step
#: at close; the model structure with whatever step the adapter had when it first saw the model.
_NOT_STEP_DATA: tuple[type[Event], ...] = (RunInfo, ModelStructure)


@dataclass(frozen=True)
class Counts:
    """What a run's event files hold, counted one way for every view.

    Attributes:
        steps: 1 + the highest training step seen (0 when none).
        recorded: Distinct steps with statistics rows.
        events: Events read (each statistics row is one event).
        anomalies: Anomaly events read.
    """

    steps: int = 0
    recorded: int = 0
    events: int = 0
    anomalies: int = 0


def count_events(items: Iterable[Event | StatsBlock]) -> Counts:
    """Count steps, recorded steps, events and anomalies over decoded events or stats blocks."""
    last, events, anomalies = -1, 0, 0
    stat_steps: set[int] = set()
    for item in items:
        if isinstance(item, StatsBlock):
            if not item.rows:
                continue
            events += len(item.rows)
            stat_steps.add(item.step)
        else:
            events += 1
            if isinstance(item, _NOT_STEP_DATA):
                continue
            if isinstance(item, TensorStats):
                stat_steps.add(item.step)
            elif isinstance(item, Anomaly):
                anomalies += 1
        last = max(last, item.step)
    return Counts(steps=last + 1, recorded=len(stat_steps), events=events, anomalies=anomalies)


def run_counts(run: Run) -> Counts:
    """:func:`count_events` over a loaded :class:`~vizdebug.runs.reader.Run`."""
    items: list[Iterable[Event]] = [
        *run.scalars.values(),
        *run.histograms.values(),
        run.stats,
        run.anomalies,
        run.notes,
        run.snapshots,
    ]
    counts = count_events(e for group in items for e in group)
    # Structures and run infos are events too, though not step data.
    return Counts(
        steps=counts.steps,
        recorded=counts.recorded,
        events=counts.events + len(run.structures) + len(run.run_infos),
        anomalies=counts.anomalies,
    )


def _tails(reader: RunReader | None) -> list[str]:
    """Files whose end is an incomplete record: cut short, unless a writer is still at work."""
    if reader is None:
        return []
    out = []
    # The reader keeps one RecordReader per file; its offset is where the last whole record ended.
    for path, state in dict(getattr(reader, "_files", {})).items():
        offset = int(getattr(getattr(state, "reader", None), "offset", 0))
        try:
            size = os.stat(path).st_size
        except OSError:
            continue
        if size > offset and not getattr(state, "broken", False):
            out.append(
                f"{path}: the last {size - offset} bytes (from byte {offset}) are an incomplete "
                "record: the file was cut short"
            )
    return out


def read_warnings(
    reader: RunReader | None,
    problems: Iterable[object],
    infos: list[dict[str, Any]],
    events_read: int,
    *,
    live: bool,
) -> tuple[str, ...]:
    """Why the counts of a run may be short: unreadable records, cut-short files, lost events.

    Args:
        reader: The reader that read the run (for the files' read offsets).
        problems: The reader's :class:`~vizdebug.runs.reader.ReadProblem` list.
        infos: The run-info files (each says how many events its writer wrote).
        events_read: Events actually read.
        live: Whether a writer is still at work (an incomplete last record is then normal).
    """
    out = [str(p) for p in problems]
    if not live:
        out += _tails(reader)
        written = sum(_int(i.get("events")) for i in infos)
        if infos and written > events_read:
            out.append(f"run.json says {written} events were written; {events_read} could be read")
    return tuple(out)


def dropped_by_kind(infos: list[dict[str, Any]]) -> dict[str, int]:
    """What the writers and sinks of a run dropped, by kind of event or by sink, summed over ranks.

    Writer drops are keyed by event kind (``"snapshot"``); a sink's by ``"<sink> sink"``.
    """
    out: dict[str, int] = {}
    for info in infos:
        dropped = info.get("dropped")
        for kind, n in dropped.items() if isinstance(dropped, dict) else ():
            if _int(n):
                out[str(kind)] = out.get(str(kind), 0) + _int(n)
        sinks = info.get("sinks")
        for name, s in sinks.items() if isinstance(sinks, dict) else ():
            n = _int(s.get("dropped")) if isinstance(s, dict) else 0
            if n:
                key = f"{name} sink"
                out[key] = out.get(key, 0) + n
    return out


def dropped_text(dropped: dict[str, int]) -> str:
    """``{"snapshot": 1, "scalar": 3}`` as ``"4 (scalar 3, snapshot 1)"``; ``"0"`` when empty."""
    total = sum(dropped.values())
    if not total:
        return "0"
    return f"{total} (" + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) + ")"


def _int(value: object) -> int:
    # run.json is data on disk: a wrong type counts as nothing rather than crashing a listing.
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 2**63:
        return int(value)
    return 0


@dataclass(frozen=True)
class RunSummary:
    """Facts about a run directory.

    Attributes:
        path: The run directory.
        framework: "torch", "keras", ... or "other" for another tool's run.
        steps: 1 + the highest training step in the event files (0 if none).
        events: Events read from the event files.
        anomalies: Anomaly events.
        dropped: Events dropped by the writer's budget and by sinks (total).
        size: Bytes on disk.
        last_update: Modification time of the newest file, seconds since the epoch.
        live: Whether a process is still writing it.
        problems: Why the counts may be short (unreadable records, cut-short files), as text.
        recorded: Distinct steps with statistics rows.
        dropped_by: ``dropped`` by kind of event or sink.
    """

    path: Path
    framework: str
    steps: int
    events: int
    anomalies: int
    dropped: int
    size: int
    last_update: float
    live: bool
    problems: tuple[str, ...] = field(default=())
    recorded: int = 0
    dropped_by: dict[str, int] = field(default_factory=dict)


def is_pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_live(infos: list[dict[str, Any]]) -> bool:
    """Whether a run-info file says its writer is running, on this host, in a live process."""
    return any(
        info.get("status") == "running"
        and info.get("host") == os.uname().nodename
        and is_pid_alive(_int(info.get("pid")))
        for info in infos
    )


def _disk(run_dir: Path) -> tuple[int, float]:
    size, newest = 0, 0.0
    for root, _dirs, files in os.walk(run_dir):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            size += st.st_size
            newest = max(newest, st.st_mtime)
    return size, newest


def summarize(run_dir: Path) -> RunSummary:
    """Summarize a run: counts from its event files, status and drops from its run-info files.

    The counts come from reading the event files (statistics left packed), as ``vizdebug show``
    does, so both say the same; a killed run's run.json may be behind its files. A run that
    cannot be read at all gives a summary whose ``problems`` say why, so one bad run never hides
    the others in a listing.
    """
    try:
        return _summarize(run_dir)
    except (OSError, ValueError, TypeError, RecursionError, MemoryError) as exc:
        size, newest = _disk(run_dir)
        return RunSummary(
            path=run_dir,
            framework="-",
            steps=0,
            events=0,
            anomalies=0,
            dropped=0,
            size=size,
            last_update=newest,
            live=False,
            problems=(f"{run_dir}: could not be read: {type(exc).__name__}: {exc}",),
        )


def _summarize(run_dir: Path) -> RunSummary:
    size, newest = _disk(run_dir)
    infos = read_info(run_dir)
    reader = RunReader(run_dir, expand_stats=False)
    try:
        has_events = any(is_event_file(p) for p in run_dir.iterdir())
    except OSError:  # unreadable: the reader names why, and the run is listed with it
        has_events = True
    items = reader.poll() if has_events else []
    counts = count_events(items)
    live = is_live(infos)
    framework = next((str(i["framework"]) for i in infos if i.get("framework")), "") or next(
        (i.framework for i in items if isinstance(i, RunInfo) and i.framework), ""
    )
    dropped = dropped_by_kind(infos)
    return RunSummary(
        path=run_dir,
        framework=framework or ("-" if infos else "other"),
        steps=counts.steps,
        events=counts.events,
        anomalies=counts.anomalies,
        dropped=sum(dropped.values()),
        size=size,
        last_update=newest,
        live=live,
        problems=read_warnings(reader, reader.problems, infos, counts.events, live=live),
        recorded=counts.recorded,
        dropped_by=dropped,
    )
