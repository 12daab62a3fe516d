"""The run's identity and counts, as the writer records them.

:func:`start_info` builds the :class:`~vizdebug.events.RunInfo` event a
:class:`~vizdebug.writer.Writer` queues first (versions, host, pid, argv, start time).
:func:`info_document` builds the per-rank ``run.json`` document the writer rewrites every flush
interval and at close: that identity plus status, last step, events written by kind, anomalies,
events dropped by the queue-full policy, invalid items and per-sink counts;
:func:`write_run_info` replaces the file (see :func:`vizdebug.runs.layout.write_info`), logging
rather than raising when the disk refuses.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .events import RunInfo
from .fanout import SinkStatus
from .runs.layout import write_info

__all__ = ["info_document", "start_info", "write_run_info"]

log = logging.getLogger("vizdebug")


def start_info(
    *,
    run: str,
    rank: int,
    world_size: int,
    framework: str,
    versions: Mapping[str, str] | None,
    start: float,
) -> RunInfo:
    """The run-info event of a writer starting at ``start`` (seconds since the epoch).

    Python's and vizdebug's versions are recorded, then ``versions`` (which may override them).
    """
    return RunInfo(
        step=0,
        wall_time=start,
        run=run,
        rank=rank,
        framework=framework,
        versions={
            "python": platform.python_version(),
            "vizdebug": __version__,
            **(versions or {}),
        },
        host=socket.gethostname(),
        pid=os.getpid(),
        world_size=world_size,
        start_time=start,
        argv=tuple(sys.argv),
    )


def info_document(
    info: RunInfo,
    *,
    run: str,
    rank: int,
    world_size: int,
    framework: str,
    status: str,
    now: float,
    last_step: int,
    written: Mapping[str, int],
    dropped: Mapping[str, int],
    invalid: int,
    sinks: Sequence[SinkStatus],
) -> dict[str, Any]:
    """The ``run.json`` document: ``info``'s identity plus the writer's counts so far.

    Args:
        info: The writer's start info (versions, host, pid, start time, argv).
        run, rank, world_size, framework: As the writer has them.
        status: ``"running"`` or ``"closed"``.
        now: Seconds since the epoch, recorded as ``last_update``.
        last_step: The highest step written (-1 before any).
        written: Events written, by event class name (``"Scalar"``, ``"Anomaly"``, ...).
        dropped: Events dropped by the queue-full policy, by kind.
        invalid: Queued items the writer thread could not convert.
        sinks: Every sink's status, the run directory's first.
    """
    return {
        "run": run,
        "rank": rank,
        "world_size": world_size,
        "framework": framework,
        "versions": dict(info.versions),
        "host": info.host,
        "pid": info.pid,
        "start_time": info.start_time,
        "argv": list(info.argv),
        "status": status,
        "last_update": now,
        "last_step": last_step,
        "events": sum(written.values()),
        "events_by_kind": dict(written),
        "anomalies": written.get("Anomaly", 0),
        "dropped": dict(dropped),
        "invalid": invalid,
        "sinks": {
            s.name: {
                "written": s.written,
                "failures": s.failures,
                "dropped": s.dropped,
                "disabled": s.disabled,
                "last_error": s.last_error,
                "outage": s.outage,
                "outages": s.outages,
                "held": s.held,
            }
            for s in sinks
        },
    }


_failing: set[Path] = set()  # run directories whose run info could not be written


def write_run_info(run_dir: Path, rank: int, document: dict[str, Any]) -> None:
    """Replace a rank's run-info file; a failure is logged once per outage, not raised."""
    key = run_dir / str(rank)
    try:
        write_info(run_dir, rank, document)
    except OSError as exc:
        if key not in _failing:
            _failing.add(key)
            log.warning(
                "vizdebug could not update run info in %s: %s (retried every flush interval; "
                "logged again only when it works again)",
                run_dir,
                exc,
            )
        return
    if key in _failing:
        _failing.discard(key)
        log.warning("vizdebug updates run info in %s again", run_dir)
