"""SVG snapshots of the main screens on the deterministic demo run (fixed size and values).

Update the baselines with ``pytest tests/tui --snapshot-update`` and look at the report.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from vizdebug.tui.app import VizdebugApp
from vizdebug.tui.widgets import AnomalyTable, HealthTable, TensorInspector

from .conftest import wait_for, wait_loaded

SIZE = (140, 40)
Compare = Callable[..., bool]


def _before(*keys: str, then: Callable[[Pilot[None]], Awaitable[None]] | None = None) -> Any:
    async def run_before(pilot: Pilot[None]) -> None:
        await wait_loaded(pilot)
        for key in keys:
            await pilot.press(key)
        if then is not None:
            await then(pilot)
        screen = pilot.app.run_screen  # type: ignore[attr-defined]
        if screen.active_tab == "health":  # the table follows the step cursor after a debounce
            table = screen.query_one(HealthTable)
            await wait_for(pilot, lambda: table.shown_step == screen.step and table.row_count)
        await pilot.pause()

    return run_before


def test_health_screen(snap_compare: Compare, logdir: Path) -> None:
    assert snap_compare(VizdebugApp(logdir), terminal_size=SIZE, run_before=_before("left"))


def test_series_screen_at_anomaly(snap_compare: Compare, logdir: Path) -> None:
    assert snap_compare(VizdebugApp(logdir), terminal_size=SIZE, run_before=_before("home", "a"))


def test_anomalies_screen(snap_compare: Compare, logdir: Path) -> None:
    async def rows(pilot: Pilot[None]) -> None:
        table = pilot.app.screen.query_one(AnomalyTable)
        await wait_for(pilot, lambda: table.row_count == 1)

    assert snap_compare(VizdebugApp(logdir), terminal_size=SIZE, run_before=_before("3", then=rows))


def test_inspector_screen(snap_compare: Compare, logdir: Path) -> None:
    async def nan_tensor(pilot: Pilot[None]) -> None:
        inspector = pilot.app.screen.query_one(TensorInspector)
        await wait_for(pilot, lambda: len(inspector.tensors) == 2)
        inspector.select("block.fc2/output")

    assert snap_compare(
        VizdebugApp(logdir), terminal_size=SIZE, run_before=_before("s", then=nan_tensor)
    )


def test_help_screen(snap_compare: Compare, logdir: Path) -> None:
    assert snap_compare(VizdebugApp(logdir), terminal_size=SIZE, run_before=_before("?"))


@pytest.mark.parametrize("size", [(80, 24)])
def test_small_terminal(snap_compare: Compare, logdir: Path, size: tuple[int, int]) -> None:
    assert snap_compare(VizdebugApp(logdir), terminal_size=size, run_before=_before())
