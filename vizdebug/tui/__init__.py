"""``vizdebug tui``: a Textual terminal UI over run directories (and, later, live runs).

Importing this package is cheap; Textual is loaded when :class:`VizdebugApp` is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import VizdebugApp

__all__ = ["VizdebugApp"]


def __getattr__(name: str) -> Any:
    if name == "VizdebugApp":
        from .app import VizdebugApp

        return VizdebugApp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
