"""Reading runs: find them, load them, and tail them while they are written.

Reads vizdebug's own event files and those of other tools (torch's SummaryWriter, tensorboardX,
Keras's TensorBoard callback). A record cut short at the end of a file is left for the next
poll; a corrupt one becomes a :class:`ReadProblem` naming file and offset, and reading goes on
where it can.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from ..errors import CorruptRecordError, RunNotFoundError
from ..events import (
    Anomaly,
    Event,
    Histogram,
    ModelStructure,
    Note,
    RunInfo,
    Scalar,
    SnapshotRef,
    TensorStats,
)
from .codec import Decoder, StatsBlock
from .layout import read_info

__all__ = ["ReadProblem", "Run", "RunReader", "find_runs", "is_event_file", "load_run"]

_RANK_RE = re.compile(r"vizdebug-r(\d+)$")


def is_event_file(path: Path) -> bool:
    """Whether a file name is a TensorBoard event file."""
    return "tfevents" in path.name and not path.name.endswith(".tmp")


@dataclass(frozen=True)
class ReadProblem:
    """A record that could not be read."""

    path: str
    offset: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}: byte {self.offset}: {self.message}"


class _FileState:
    def __init__(self, path: Path, run: str, expand_stats: bool) -> None:
        from .records import RecordReader

        match = _RANK_RE.search(path.name)
        self.reader = RecordReader(str(path))
        self.decoder = Decoder(run, int(match.group(1)) if match else 0, expand_stats=expand_stats)
        self.broken = False


class RunReader:
    """Reads every event file of one run directory incrementally.

    Args:
        run_dir: The directory holding the event files.
        expand_stats: Unpack statistics into TensorStats events (else yield StatsBlock).
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, expand_stats: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.name = self.run_dir.name
        self.expand_stats = expand_stats
        self.problems: list[ReadProblem] = []
        self._files: dict[Path, _FileState] = {}

    def event_files(self) -> list[Path]:
        """The event files currently in the run directory."""
        try:
            return sorted(p for p in self.run_dir.iterdir() if p.is_file() and is_event_file(p))
        except OSError:
            return []

    def poll(self) -> list[Event | StatsBlock]:
        """Everything appended since the last call (all of it on the first call)."""
        out: list[Event | StatsBlock] = []
        for path in self.event_files():
            state = self._files.get(path)
            if state is None:
                state = self._files[path] = _FileState(path, self.name, self.expand_stats)
            if not state.broken:
                out.extend(self._read(state))
        return out

    def _read(self, state: _FileState) -> Iterator[Event | StatsBlock]:
        reader = state.reader
        while True:
            try:
                for offset, record in reader.read():
                    try:
                        yield from state.decoder.decode(record)
                    except (DecodeError, ValueError, KeyError, IndexError, TypeError) as exc:
                        self.problems.append(
                            ReadProblem(reader.path, offset, f"undecodable event: {exc}")
                        )
                return
            except CorruptRecordError as exc:
                self.problems.append(ReadProblem(exc.path, exc.offset, exc.reason))
                if exc.reason.startswith("length"):
                    state.broken = True  # no way to find the next record boundary
                    return
            except OSError as exc:
                self.problems.append(ReadProblem(reader.path, reader.offset, str(exc)))
                return


@dataclass
class Run:
    """A run loaded into memory; :meth:`update` tails it.

    Attributes:
        path: The run directory.
        name: Its name.
        info: Each rank's run-info file (empty for other tools' runs).
        scalars: Scalar events by tag, in file order.
        histograms: Histograms from other tools' files, by tag.
        stats: Tensor statistics, in file order.
        anomalies, structures, notes, snapshots, run_infos: Events of those kinds.
        problems: Records that could not be read.
    """

    path: Path
    name: str
    info: list[dict[str, Any]] = field(default_factory=list)
    scalars: dict[str, list[Scalar]] = field(default_factory=lambda: defaultdict(list))
    histograms: dict[str, list[Histogram]] = field(default_factory=lambda: defaultdict(list))
    stats: list[TensorStats] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    structures: list[ModelStructure] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    snapshots: list[SnapshotRef] = field(default_factory=list)
    run_infos: list[RunInfo] = field(default_factory=list)
    events: int = 0
    last_step: int = -1
    _reader: RunReader | None = field(default=None, repr=False)

    @property
    def problems(self) -> list[ReadProblem]:
        """Records that could not be read."""
        return self._reader.problems if self._reader else []

    @property
    def framework(self) -> str:
        """The framework that wrote the run, where known."""
        for info in self.info:
            if info.get("framework"):
                return str(info["framework"])
        for ri in self.run_infos:
            if ri.framework:
                return ri.framework
        return "" if self.info or self.run_infos else "other"

    def update(self) -> list[Event]:
        """Read what was appended since the last call; returns the new events."""
        if self._reader is None:
            self._reader = RunReader(self.path)
        self.info = read_info(self.path)
        new: list[Event] = []
        for item in self._reader.poll():
            events = item.events() if isinstance(item, StatsBlock) else [item]
            for event in events:
                self._add(event)
                new.append(event)
        return new

    def _add(self, event: Event) -> None:
        self.events += 1
        if event.step > self.last_step:
            self.last_step = event.step
        if isinstance(event, Scalar):
            self.scalars[event.tag].append(event)
        elif isinstance(event, TensorStats):
            self.stats.append(event)
        elif isinstance(event, Histogram):
            self.histograms[event.tag].append(event)
        elif isinstance(event, Anomaly):
            self.anomalies.append(event)
        elif isinstance(event, ModelStructure):
            self.structures.append(event)
        elif isinstance(event, Note):
            self.notes.append(event)
        elif isinstance(event, SnapshotRef):
            self.snapshots.append(event)
        elif isinstance(event, RunInfo):
            self.run_infos.append(event)


def find_runs(logdir: str | os.PathLike[str]) -> list[Path]:
    """Every directory under ``logdir`` (itself included) that holds event files.

    Raises:
        RunNotFoundError: ``logdir`` does not exist or is not a directory.
    """
    root = Path(logdir)
    if not root.is_dir():
        raise RunNotFoundError(f"{root} is not a directory; pass a log directory such as ./runs")
    found = []
    for dirpath, _dirs, files in os.walk(root):
        if any("tfevents" in f for f in files):
            found.append(Path(dirpath))
    return sorted(found)


def load_run(path: str | os.PathLike[str]) -> Run:
    """Load a run directory (or the directory of a single event file).

    Raises:
        RunNotFoundError: The path does not exist or holds no event files.
    """
    p = Path(path)
    if p.is_file() and is_event_file(p):
        p = p.parent
    if not p.is_dir():
        raise RunNotFoundError(f"{p} does not exist; `vizdebug runs` lists the runs there are")
    if not any(is_event_file(f) for f in p.iterdir()):
        raise RunNotFoundError(
            f"{p} holds no event files; pass a run directory (`vizdebug runs` lists them)"
        )
    run = Run(path=p, name=p.name)
    run.update()
    return run
