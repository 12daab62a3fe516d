"""One line of facts per run, for ``vizdebug runs`` and run pickers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import VizdebugError
from .layout import read_info
from .reader import is_event_file, load_run

__all__ = ["RunSummary", "is_pid_alive", "summarize"]


@dataclass(frozen=True)
class RunSummary:
    """Facts about a run directory.

    Attributes:
        path: The run directory.
        framework: "torch", "keras", ... or "other" for another tool's run.
        steps: Last step seen, plus one (0 if none).
        events: Events written (vizdebug runs) or read (other tools' runs).
        anomalies: Anomaly events.
        dropped: Events dropped by the writer's queue-full policy and by sinks.
        size: Bytes on disk.
        last_update: Modification time of the newest file, seconds since the epoch.
        live: Whether a process is still writing it.
        problems: Unreadable records, as text.
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
    """Summarize a run from its run-info files, or by reading it when it has none."""
    size, newest = _disk(run_dir)
    infos = read_info(run_dir)
    if infos:
        dropped = 0
        for info in infos:
            dropped += sum(int(v) for v in dict(info.get("dropped", {})).values())
            dropped += sum(int(s.get("dropped", 0)) for s in dict(info.get("sinks", {})).values())
        live = any(
            info.get("status") == "running"
            and info.get("host") == os.uname().nodename
            and is_pid_alive(int(info.get("pid", 0)))
            for info in infos
        )
        return RunSummary(
            path=run_dir,
            framework=next((str(i["framework"]) for i in infos if i.get("framework")), "-"),
            steps=max(int(i.get("last_step", -1)) for i in infos) + 1,
            events=sum(int(i.get("events", 0)) for i in infos),
            anomalies=sum(int(i.get("anomalies", 0)) for i in infos),
            dropped=dropped,
            size=size,
            last_update=newest,
            live=live,
        )
    try:
        run = load_run(run_dir) if any(is_event_file(p) for p in run_dir.iterdir()) else None
    except OSError as exc:  # unreadable or removed: listed with the reason, never hidden
        reason = str(exc) if isinstance(exc, VizdebugError) else exc.strerror or str(exc)
        return RunSummary(
            path=run_dir,
            framework="?",
            steps=0,
            events=0,
            anomalies=0,
            dropped=0,
            size=size,
            last_update=newest,
            live=False,
            problems=(f"{run_dir}: {reason}",),
        )
    return RunSummary(
        path=run_dir,
        framework=run.framework if run else "other",
        steps=run.last_step + 1 if run else 0,
        events=run.events if run else 0,
        anomalies=len(run.anomalies) if run else 0,
        dropped=0,
        size=size,
        last_update=newest,
        live=False,
        problems=tuple(str(p) for p in run.problems) if run else (),
    )
