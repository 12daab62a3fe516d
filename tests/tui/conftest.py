"""Fixtures for the TUI tests: deterministic runs and a poll-until helper."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from vizdebug.tui.app import VizdebugApp

from .runs import make_demo_run


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    """A log directory holding the deterministic demo run as ``demo``."""
    root = tmp_path / "runs"
    make_demo_run(root / "demo")
    return root


async def wait_for(
    pilot: Pilot[None], cond: Callable[[], object], *, timeout: float = 30.0, what: str = ""
) -> None:
    """Let the app run until ``cond()`` is true; fails after a generous ``timeout``."""
    waited = 0.0
    while not cond():
        if waited > timeout:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await pilot.pause(0.05)
        waited += 0.05


async def wait_loaded(pilot: Pilot[None]) -> None:
    """Wait until the app shows its first run (or its message that there is none)."""
    app = pilot.app
    assert isinstance(app, VizdebugApp)
    await wait_for(
        pilot,
        lambda: (
            (app.screen_stack and app.store is not None and app.run_screen.loaded)
            or _message_shown(app)
        ),
        what="the first screen",
    )
    await pilot.pause()


def _message_shown(app: VizdebugApp) -> bool:
    from vizdebug.tui.widgets import MessageBar

    try:
        return bool(app.run_screen.query_one(MessageBar).text)
    except Exception:
        return False
