"""The TUI's screens."""

from __future__ import annotations

from .help import HelpScreen
from .run_screen import RunScreen

__all__ = ["HelpScreen", "RunScreen"]
