"""The live debugger: a control server in the training process, a client for the TUI."""

from __future__ import annotations

from .client import LiveClient, LiveError, LiveRun, find_live_runs, read_live_file
from .debugger import BREAK_KINDS, Breakpoint, Debugger, Position
from .server import LIVE_FILE, ControlServer

__all__ = [
    "BREAK_KINDS",
    "LIVE_FILE",
    "Breakpoint",
    "ControlServer",
    "Debugger",
    "LiveClient",
    "LiveError",
    "LiveRun",
    "Position",
    "find_live_runs",
    "read_live_file",
]
