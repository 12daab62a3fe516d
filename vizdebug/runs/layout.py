"""Where a run lives on disk and what its files are called.

A run directory holds, per rank, one TensorBoard event file and one run-info JSON file, plus a
``snapshots/`` folder of safetensors files::

    runs/20261122-021500-myhost/
        events.out.tfevents.1763777700.myhost.4242.vizdebug-r0
        run.json                  (rank 0; rank N writes run.rankN.json)
        snapshots/step-000123-r0-anomaly.safetensors
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from .problems import ReadProblem, read_small

__all__ = [
    "ENV_LOGDIR",
    "checked_info",
    "default_root",
    "event_file_name",
    "info_file_name",
    "new_run_dir",
    "read_info",
    "read_infos",
    "write_info",
]

ENV_LOGDIR = "VIZDEBUG_LOGDIR"
_INFO_RE = re.compile(r"run(\.rank\d+)?\.json")


def default_root() -> Path:
    """Where new runs go: ``$VIZDEBUG_LOGDIR``, else ``./runs``."""
    return Path(os.environ.get(ENV_LOGDIR) or "runs")


def new_run_dir(root: Path | None = None, *, now: float | None = None) -> Path:
    """A fresh ``<root>/<YYYYmmdd-HHMMSS>-<host>`` directory (suffixed if the name is taken)."""
    root = default_root() if root is None else root
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    base = f"{stamp}-{socket.gethostname()}"
    candidate = root / base
    n = 1
    while candidate.exists():
        candidate = root / f"{base}-{n}"
        n += 1
    candidate.mkdir(parents=True)
    return candidate


def event_file_name(rank: int, *, now: float | None = None) -> str:
    """Name of a rank's event file; TensorBoard picks up anything containing ``tfevents``."""
    stamp = int(time.time() if now is None else now)
    return f"events.out.tfevents.{stamp}.{socket.gethostname()}.{os.getpid()}.vizdebug-r{rank}"


def info_file_name(rank: int) -> str:
    """Name of a rank's run-info file."""
    return "run.json" if rank == 0 else f"run.rank{rank}.json"


def write_info(run_dir: Path, rank: int, info: dict[str, Any]) -> None:
    """Atomically replace a rank's run-info file."""
    path = run_dir / info_file_name(rank)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(info, indent=1, sort_keys=True, allow_nan=True))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a partial file on a full disk: give its space back
        raise


#: The largest run-info file a reader opens (vizdebug's are a few KB).
MAX_INFO_BYTES = 4 << 20

_COUNTS = "counts"  # a JSON object of whole numbers
#: The fields of ``run.json`` and their JSON types: a field of another type is dropped and
#: named as a problem, so a view can read every field it finds without checking it.
INFO_FIELDS: dict[str, str] = {
    "run": "str",
    "rank": "int",
    "world_size": "int",
    "framework": "str",
    "versions": "strings",
    "host": "str",
    "pid": "int",
    "start_time": "float",
    "argv": "list",
    "status": "str",
    "last_update": "float",
    "last_step": "int",
    "events": "int",
    "events_by_kind": _COUNTS,
    "anomalies": "int",
    "dropped": _COUNTS,
    "invalid": "int",
    "sinks": "sinks",
}
_SINK_FIELDS = {
    "written": "int",
    "failures": "int",
    "dropped": "int",
    "disabled": "bool",
    "last_error": "str",
    "outage": "bool",
    "outages": "int",
    "held": "int",
}


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _fits(kind: str, v: Any) -> bool:
    if kind == "str":
        return isinstance(v, str)
    if kind == "int":
        return _whole(v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "float":
        return isinstance(v, int | float) and not isinstance(v, bool)
    if kind == "list":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if kind == "strings":
        return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
    if kind == _COUNTS:
        return isinstance(v, dict) and all(_whole(x) for x in v.values())
    if kind == "sinks":
        return isinstance(v, dict) and all(
            isinstance(s, dict)
            and all(_fits(_SINK_FIELDS[k], x) for k, x in s.items() if k in _SINK_FIELDS)
            for s in v.values()
        )
    return False


def checked_info(data: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """A run-info document with every known field of its declared type, and what was wrong.

    Returns:
        The document (None if it is not a JSON object) with mistyped fields removed, and one
        message per removed field.
    """
    if not isinstance(data, dict):
        kind = "null" if data is None else type(data).__name__
        return None, [f"not a JSON object (a {kind}); ignored"]
    bad = [k for k, kind in INFO_FIELDS.items() if k in data and not _fits(kind, data[k])]
    for k in bad:
        data.pop(k)
    return data, [f"field {k!r} has the wrong type; ignored" for k in bad]


def read_infos(run_dir: Path) -> tuple[list[dict[str, Any]], list[ReadProblem]]:
    """Every rank's run info in a run directory, checked, and what could not be read.

    Special files (a FIFO, a link to ``/dev/zero``) are refused by type, files over
    :data:`MAX_INFO_BYTES` by size, JSON nested too deeply or of the wrong shape by content:
    each becomes a :class:`~vizdebug.runs.problems.ReadProblem`, never an exception.
    """
    infos: list[dict[str, Any]] = []
    problems: list[ReadProblem] = []
    try:
        paths = sorted(p for p in run_dir.iterdir() if _INFO_RE.fullmatch(p.name))
    except OSError:
        return infos, problems  # the directory itself: the event-file reader reports it
    for path in paths:
        try:
            data = json.loads(read_small(path, MAX_INFO_BYTES))
        except RecursionError:
            problems.append(ReadProblem(str(path), 0, "JSON nested too deeply; ignored"))
            continue
        except FileNotFoundError:
            continue  # replaced between listing and reading (the writer's atomic rename)
        except OSError as exc:
            problems.append(ReadProblem(str(path), 0, f"cannot read: {exc.strerror or exc}"))
            continue
        except ValueError as exc:
            problems.append(ReadProblem(str(path), 0, f"not valid JSON: {exc}"))
            continue
        info, why = checked_info(data)
        problems += [ReadProblem(str(path), 0, w) for w in why]
        if info is not None:
            infos.append(info)
    return infos, problems


def read_info(run_dir: Path) -> list[dict[str, Any]]:
    """Every rank's run info in a run directory, checked (unreadable files are skipped)."""
    return read_infos(run_dir)[0]
