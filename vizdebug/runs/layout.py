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
import socket
import time
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_LOGDIR",
    "default_root",
    "event_file_name",
    "info_file_name",
    "new_run_dir",
    "read_info",
    "write_info",
]

ENV_LOGDIR = "VIZDEBUG_LOGDIR"


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
    tmp.write_text(json.dumps(info, indent=1, sort_keys=True, allow_nan=True))
    os.replace(tmp, path)


def read_info(run_dir: Path) -> list[dict[str, Any]]:
    """Every rank's run info in a run directory (unreadable files are skipped)."""
    infos: list[dict[str, Any]] = []
    for path in sorted(run_dir.glob("run*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            infos.append(data)
    return infos
