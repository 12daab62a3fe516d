"""The run directory: vizdebug's durable store, in TensorBoard's event-file format."""

from __future__ import annotations

from .layout import default_root, new_run_dir, read_info
from .reader import ReadProblem, Run, RunReader, find_runs, load_run
from .snapshots import load_snapshot

__all__ = [
    "ReadProblem",
    "Run",
    "RunReader",
    "default_root",
    "find_runs",
    "load_run",
    "load_snapshot",
    "new_run_dir",
    "read_info",
]
