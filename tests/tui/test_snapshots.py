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
from vizdebug.tui.screens import HelpScreen
from vizdebug.tui.widgets import AnomalyTable, HealthTable, LineChart, TensorInspector

from .conftest import wait_for, wait_loaded
from .runs import NAN_STEP

SIZE = (140, 40)
Compare = Callable[..., bool]


def _before(*keys: str, then: Callable[[Pilot[None]], Awaitable[None]] | None = None) -> Any:
    async def run_before(pilot: Pilot[None]) -> None:
        await wait_loaded(pilot)
        await _health_settled(pilot)  # what a screen pushed on top shows behind it
        for key in keys:
            await pilot.press(key)
        if then is not None:
            await then(pilot)
        await _health_settled(pilot)
        await pilot.pause()

    return run_before


async def _health_settled(pilot: Pilot[None]) -> None:
    screen = pilot.app.run_screen  # type: ignore[attr-defined]
    if screen.store is not None and screen.active_tab == "health":  # follows the step cursor
        table = screen.query_one(HealthTable)
        await wait_for(pilot, lambda: table.shown_step == screen.step and table.row_count)
        # The table sizes its columns and height for new rows when it is next idle, which can
        # come after pilot.pause() under CPU load: wait for it, then let the screen repaint.
        header = table.header_height if table.show_header else 0
        await wait_for(pilot, lambda: table.virtual_size.height >= table.row_count + header)
        await pilot.pause()


def test_health_screen(snap_compare: Compare, logdir: Path) -> None:
    assert snap_compare(VizdebugApp(logdir), terminal_size=SIZE, run_before=_before("left"))


async def _to_nan_step(pilot: Pilot[None]) -> None:
    screen = pilot.app.run_screen  # type: ignore[attr-defined]
    screen.go_to_step(NAN_STEP)
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), SIZE])
def test_health_at_nan_step(snap_compare: Compare, logdir: Path, size: tuple[int, int]) -> None:
    """Dashes for the gradients with no finite value, NaN/+Inf/-Inf flags in their colours."""
    assert snap_compare(
        VizdebugApp(logdir), terminal_size=size, run_before=_before(then=_to_nan_step)
    )


@pytest.mark.parametrize("size", [(80, 24), (203, 51)])
def test_scalars_chart(snap_compare: Compare, logdir: Path, size: tuple[int, int]) -> None:
    """The chart fills its pane, with axes and the readout at the cursor."""

    async def chart(pilot: Pilot[None]) -> None:
        view = pilot.app.screen.query_one("#scalar-chart", LineChart)
        await wait_for(pilot, lambda: view.cursor_value is not None)
        await pilot.press("left", "left")

    assert snap_compare(
        VizdebugApp(logdir), terminal_size=size, run_before=_before("5", then=chart)
    )


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


@pytest.mark.parametrize("size", [SIZE, (80, 24)])
def test_help_screen(
    snap_compare: Compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    # an empty log directory, named relatively: the help screen over the same background
    # every time (a run's health table settles at its own pace behind a pushed screen)
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)

    async def shown(pilot: Pilot[None]) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))
        await pilot.pause()

    assert snap_compare(
        VizdebugApp(Path("runs")), terminal_size=size, run_before=_before("?", then=shown)
    )


@pytest.mark.parametrize("size", [(80, 24), (203, 51)])
def test_small_terminal(snap_compare: Compare, logdir: Path, size: tuple[int, int]) -> None:
    assert snap_compare(VizdebugApp(logdir), terminal_size=size, run_before=_before())
