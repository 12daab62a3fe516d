"""Reading runs: find them, load them, and tail them while they are written.

Reads vizdebug's own event files and those of other tools (torch's SummaryWriter, tensorboardX,
Keras's TensorBoard callback). A record cut short at the end of a file is left for the next
poll; a corrupt one becomes a :class:`ReadProblem` naming file and offset, and reading goes on
where it can.
"""

from __future__ import annotations

import os
import re
import stat
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CorruptRecordError, RunNotFoundError, VizdebugError
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
from .layout import read_infos
from .problems import NotRegularFileError, ReadProblem
from .records import FileReplacedError, RecordReader

__all__ = [
    "ReadProblem",
    "Run",
    "RunReader",
    "RunUnreadableError",
    "find_runs",
    "is_event_file",
    "load_run",
]

_RANK_RE = re.compile(r"vizdebug-r(\d+)$")


def is_event_file(path: Path) -> bool:
    """Whether a file name is a TensorBoard event file."""
    return "tfevents" in path.name and not path.name.endswith(".tmp")


#: Problems one reader keeps; past it they are counted in :attr:`RunReader.more_problems`.
MAX_PROBLEMS = 1000


class RunUnreadableError(VizdebugError, OSError):
    """A run directory exists but cannot be read (permission denied, I/O error)."""


class _FileState:
    def __init__(self, path: Path, run: str, expand_stats: bool) -> None:
        match = _RANK_RE.search(path.name)
        self.rank = int(match.group(1)) if match else 0
        self.run = run
        self.expand_stats = expand_stats
        self.reader = RecordReader(str(path))
        self.decoder = Decoder(run, self.rank, expand_stats=expand_stats)
        self.last_error = ""  # an OSError is reported once, not on every poll

    @property
    def broken(self) -> bool:
        """Whether the rest of the file is damage (no intact record found past it yet)."""
        return self.reader.scanning

    def restart(self) -> None:
        self.decoder = Decoder(self.run, self.rank, expand_stats=self.expand_stats)


class RunReader:
    """Reads every event file of one run directory incrementally.

    Total: nothing in the directory makes it raise, hang or read without bound. Damage becomes
    :attr:`problems` and reading goes on around it: a damaged record is skipped (a damaged
    header by scanning for the next intact one), a record whose content has the wrong types is
    refused, special files are refused by type, a file deleted or made unreadable is reported
    once, and a file rewritten under the same name is read again from its start.

    Args:
        run_dir: The directory holding the event files.
        expand_stats: Unpack statistics into TensorStats events (else yield StatsBlock).
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, expand_stats: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.name = self.run_dir.name
        self.expand_stats = expand_stats
        self.problems: list[ReadProblem] = []
        #: Problems past :data:`MAX_PROBLEMS`, counted only.
        self.more_problems = 0
        self._files: dict[Path, _FileState] = {}
        self._reported: set[tuple[str, str]] = set()

    def _problem(self, path: str, offset: int, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(ReadProblem(path, offset, message))
        else:
            self.more_problems += 1

    def _once(self, path: str, message: str) -> None:
        if (path, message) not in self._reported:
            self._reported.add((path, message))
            self._problem(path, 0, message)

    def event_files(self) -> list[Path]:
        """The event files currently in the run directory (regular files only)."""
        try:
            names = sorted(p for p in self.run_dir.iterdir() if is_event_file(p))
        except OSError as exc:
            self._once(str(self.run_dir), f"cannot list the run directory: {_why(exc)}")
            return []
        files = []
        for p in names:
            try:
                mode = p.stat().st_mode
            except OSError:
                continue  # deleted since listed; a link to nowhere
            if stat.S_ISREG(mode):
                files.append(p)
            else:
                self._once(
                    str(p), "not a regular file (a FIFO, a device or a link to one); skipped"
                )
        return files

    def poll(self) -> list[Event | StatsBlock]:
        """Everything appended since the last call (all of it on the first call)."""
        out: list[Event | StatsBlock] = []
        for path in self.event_files():
            state = self._files.get(path)
            if state is None:
                state = self._files[path] = _FileState(path, self.name, self.expand_stats)
            out.extend(self._read(state))
        return out

    def _read(self, state: _FileState) -> Iterator[Event | StatsBlock]:
        reader = state.reader
        while True:
            try:
                for offset, record in reader.read():
                    try:
                        items = state.decoder.decode(record)
                    except Exception as exc:  # totality: bad content of any kind is a problem
                        self._problem(reader.path, offset, f"undecodable event: {_what(exc)}")
                        continue
                    yield from items
                state.last_error = ""
                return
            except FileReplacedError as exc:
                state.restart()
                self._problem(exc.path, exc.offset, exc.reason)
            except CorruptRecordError as exc:
                self._problem(exc.path, exc.offset, exc.reason)
            except OSError as exc:
                message = _why(exc)
                if message != state.last_error:
                    state.last_error = message
                    self._problem(reader.path, reader.offset, f"cannot read: {message}")
                return


def _why(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "deleted while being read"
    if isinstance(exc, NotRegularFileError):
        return str(exc)
    return exc.strerror or str(exc)


def _what(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    text = str(exc)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


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
    _info_problems: list[ReadProblem] = field(default_factory=list, repr=False)

    @property
    def problems(self) -> list[ReadProblem]:
        """What could not be read: records of the event files, then run-info files."""
        return (self._reader.problems if self._reader else []) + self._info_problems

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
        self.info, self._info_problems = read_infos(self.path)
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

    A directory that cannot be listed (permission denied) is listed too: it may be a run,
    and :func:`load_run` or :func:`vizdebug.runs.summary.summarize` say why it cannot be read,
    rather than the run vanishing from every listing.

    Raises:
        RunNotFoundError: ``logdir`` does not exist or is not a directory.
    """
    root = Path(logdir)
    if not root.is_dir():
        raise RunNotFoundError(f"{root} is not a directory; pass a log directory such as ./runs")
    found = []
    unreadable: list[Path] = []

    def note(exc: OSError) -> None:
        if exc.filename and not isinstance(exc, FileNotFoundError):
            unreadable.append(Path(exc.filename))

    for dirpath, _dirs, files in os.walk(root, onerror=note):
        if any("tfevents" in f for f in files):
            found.append(Path(dirpath))
    return sorted({*found, *unreadable})


def load_run(path: str | os.PathLike[str]) -> Run:
    """Load a run directory (or the directory of a single event file).

    Damaged or hostile content never raises: it becomes :attr:`Run.problems`.

    Raises:
        RunNotFoundError: The path does not exist or holds no event files.
        RunUnreadableError: The directory cannot be read (permission denied, I/O error).
    """
    p = Path(path)
    try:
        if p.is_file() and is_event_file(p):
            p = p.parent
        if not p.is_dir():
            raise RunNotFoundError(f"{p} does not exist; `vizdebug runs` lists the runs there are")
        if not any(is_event_file(f) for f in p.iterdir()):
            raise RunNotFoundError(
                f"{p} holds no event files; pass a run directory (`vizdebug runs` lists them)"
            )
    except FileNotFoundError as exc:
        if isinstance(exc, RunNotFoundError):
            raise
        raise RunNotFoundError(f"{p} was removed while being read") from None
    except OSError as exc:
        raise RunUnreadableError(f"cannot read the run {p}: {exc.strerror or exc}") from None
    run = Run(path=p, name=p.name)
    run.update()
    return run
