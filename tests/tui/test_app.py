"""Pilot tests of the TUI: navigation, escaping, anomalies, the inspector, help."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from textual.coordinate import Coordinate
from textual.widgets import Input, Static, TabbedContent

from vizdebug.tui.app import VizdebugApp
from vizdebug.tui.data import Delta, RunStore
from vizdebug.tui.screens import HelpScreen, RunScreen
from vizdebug.tui.screens.views import HEALTH_LIVE_SECS
from vizdebug.tui.widgets import (
    AnomalyTable,
    HealthTable,
    ModuleTree,
    StepBar,
    TensorInspector,
    ValueGrid,
)
from vizdebug.tui.widgets.health_table import COLUMNS, HealthRow

from .conftest import wait_for, wait_loaded
from .runs import HTML_NAME, MARKUP_NAME, NAN_STEP, STEPS

pytestmark = pytest.mark.asyncio

SIZE = (140, 40)


def _cell_texts(table: HealthTable) -> list[list[str]]:
    return [[c.plain for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_first_screen_and_step_keys(logdir: Path) -> None:
    app = VizdebugApp(logdir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        screen = app.run_screen
        table = screen.query_one(HealthTable)
        await wait_for(pilot, lambda: table.row_count == 7, what="health rows")
        assert screen.step == STEPS - 1  # opens at the last step
        assert screen.query_one(StepBar).rendered_step == STEPS - 1
        await pilot.press("left")
        assert screen.step == STEPS - 2
        assert screen.query_one(StepBar).rendered_step == STEPS - 2
        await pilot.press("home")
        assert screen.step == 0
        await pilot.press("left")
        assert screen.step == 0
        await pilot.press("end")
        assert screen.step == STEPS - 1
        await wait_for(pilot, lambda: table.shown_step == STEPS - 1, what="the table follows")
        rows = _cell_texts(table)
        names = [r[0] for r in rows]
        assert names[:4] == ["conv", "block.fc1", "block.act", "block.fc2"]
        # user-controlled text is shown literally, never interpreted as markup
        assert MARKUP_NAME in names and HTML_NAME in names
        act = rows[names.index("block.act")]
        assert "zeros(output)" in act[COLUMNS.index("flags")]
        weight = rows[names.index("block.fc1.weight")]
        assert (
            weight[COLUMNS.index("act mean")] == "-" and weight[COLUMNS.index("weight l2")] != "-"
        )


async def test_finished_run_opens_with_its_complete_health_table(
    logdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the screen says a finished run is loaded its health table is complete, and stays.

    The first build used to wait for the table's debounce timer (the screen said "loaded" over
    an empty table) and listing the run's scalar tags rebuilt it once more a moment later:
    a key, a pushed screen or a screenshot acting on "loaded" saw the table fill in behind it.
    """
    at_loaded: list[tuple[int | None, int | None, list[list[str]], int]] = []
    builds = [0]
    apply, show_rows = RunScreen.apply, HealthTable.show_rows

    def apply_spy(screen: RunScreen, store: RunStore, delta: Delta, *, first: bool) -> None:
        apply(screen, store, delta, first=first)
        if first:  # the moment ``loaded`` turns true
            table = screen.query_one(HealthTable)
            at_loaded.append((table.shown_step, screen.step, _cell_texts(table), builds[0]))

    def show_rows_spy(table: HealthTable, rows: list[HealthRow], *, step: int | None) -> None:
        builds[0] += 1
        show_rows(table, rows, step=step)

    monkeypatch.setattr(RunScreen, "apply", apply_spy)
    monkeypatch.setattr(HealthTable, "show_rows", show_rows_spy)
    shown = []
    for _ in range(5):
        at_loaded.clear()
        app = VizdebugApp(logdir)
        async with app.run_test(size=SIZE) as pilot:
            await wait_loaded(pilot)
            table = app.run_screen.query_one(HealthTable)
            await pilot.pause(HEALTH_LIVE_SECS + 0.2)  # anything still due has happened
            [(step, cursor, cells, built)] = at_loaded
            assert step == cursor == STEPS - 1
            assert cells == _cell_texts(table)
            assert builds[0] == built, "the table was rebuilt after the run was loaded"
            shown.append(cells)
    names = [r[0] for r in shown[0]]
    assert len(names) == 7 and "block.fc1.weight" in names
    assert (
        shown[0][names.index("block.fc1.weight")][COLUMNS.index("weight l2")] != "-"
    )  # its weight column
    assert all(cells == shown[0] for cells in shown)


async def test_markup_names_in_tree_render_literally(logdir: Path) -> None:
    app = VizdebugApp(logdir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        tree = app.run_screen.query_one(ModuleTree)
        labels = [str(n.label) for n in tree.root.children]
        assert any(lbl.startswith(MARKUP_NAME) for lbl in labels)
        assert any(lbl.startswith(HTML_NAME) for lbl in labels)
        lines = "\n".join(
            "".join(seg.text for seg in tree.render_line(y)) for y in range(tree.size.height)
        )
        assert MARKUP_NAME in lines


async def test_tree_and_table_select_module_for_series(logdir: Path) -> None:
    app = VizdebugApp(logdir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        screen = app.run_screen
        table = screen.query_one(HealthTable)
        await wait_for(pilot, lambda: table.row_count == 7)
        table.focus()
        await pilot.press("down", "down")
        assert screen.module == "block.act"
        await pilot.press("2")
        assert screen.query_one(TabbedContent).active == "series"
        title = screen.query_one("#series-title", Static).content
        assert str(title).startswith("block.act · output")
        await pilot.press("t")
        assert screen.role == "grad_output"
        await pilot.click(ModuleTree, offset=(3, 1))  # mouse: the first node, "conv"
        await wait_for(pilot, lambda: screen.module == "conv", what="click selects conv")


async def test_anomaly_enter_jumps_to_step_and_module(logdir: Path) -> None:
    app = VizdebugApp(logdir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        screen = app.run_screen
        await pilot.press("3")
        anomalies = screen.query_one(AnomalyTable)
        await wait_for(pilot, lambda: anomalies.row_count == 1, what="the anomaly row")
        anomalies.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.step == NAN_STEP, what="jump to the step")
        assert screen.module == "block.fc2"
        assert screen.query_one(TabbedContent).active == "series"
        label = screen.query_one("#label-nonfinite", Static).content
        assert str(label).split()[-1] == "3"
        await pilot.press("home", "a")  # "a": the next anomaly from the first step
        assert screen.step == NAN_STEP


async def test_inspector_slices_and_highlights(logdir: Path) -> None:
    app = VizdebugApp(logdir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        screen = app.run_screen
        await pilot.press("4")
        inspector = screen.query_one(TensorInspector)
        assert "No tensor snapshot at step 9" in str(
            screen.query_one("#tensor-stats", Static).content
        )
        await pilot.press("s")
        await wait_for(pilot, lambda: len(inspector.tensors) == 2, what="the snapshot")
        assert screen.step == NAN_STEP
        grid = screen.query_one(ValueGrid)
        assert inspector.selected == "block.fc2/input"
        assert (grid.row_count, len(grid.columns)) == (3, 4)  # index "0, :, :" of (2, 3, 4)
        assert grid.get_cell_at(Coordinate(2, 3)).plain == "11"
        index = screen.query_one("#tensor-index", Input)
        index.focus()
        index.value = "1, 1:3, ::2"
        await pilot.press("enter")
        assert (grid.row_count, len(grid.columns)) == (2, 2)
        assert grid.get_cell_at(Coordinate(0, 1)).plain == "18"  # x[1, 1, 2]
        await pilot.press("left")  # arrow keys edit the index, not the step
        assert screen.step == NAN_STEP
        assert not inspector.apply_index(":, :, :")
        assert "left free" in str(screen.query_one("#index-info", Static).content)
        inspector.select("block.fc2/output")
        await pilot.pause()
        assert grid.get_cell_at(Coordinate(0, 0)).plain == "nan"
        assert "red" in str(grid.get_cell_at(Coordinate(0, 0)).style)
        assert grid.get_cell_at(Coordinate(1, 1)).plain == "inf"


async def test_help_screen(logdir: Path) -> None:
    app = VizdebugApp(logdir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_inspector_widget_takes_any_arrays() -> None:
    from textual.app import App, ComposeResult

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield TensorInspector()

    app = One()
    async with app.run_test(size=(120, 40)) as pilot:
        inspector = app.query_one(TensorInspector)
        arr = np.zeros((2, 3, 5, 7), dtype=np.float64)
        arr[1, 2, 4, 6] = -np.inf
        inspector.set_tensors({"[b]live[/b]": arr}, title="fetched")
        await pilot.pause()
        assert inspector.selected == "[b]live[/b]"
        assert inspector.apply_index("1, 2, :, :")
        grid = app.query_one(ValueGrid)
        assert grid.get_cell_at(Coordinate(4, 6)).plain == "-inf"
