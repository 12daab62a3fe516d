"""Pilot tests of what the TUI shows when something went wrong: NaN as NaN, the snapshot of
the NaN step reachable, one step count in the step bar and the runs list, and ``/`` filtering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import vizdebug
from vizdebug.stats import reference_stats
from vizdebug.tui.app import VizdebugApp
from vizdebug.tui.widgets import (
    FilterBar,
    HealthTable,
    ModuleTree,
    RunsList,
    ScalarView,
    StepBar,
    TensorInspector,
)

from .conftest import wait_for, wait_loaded
from .runs import GAP_NAN_STEP, NAN_STEP, make_gap_run

pytestmark = pytest.mark.asyncio

SIZE = (140, 40)


def _rows(table: HealthTable) -> dict[str, list[str]]:
    return {table.names[i]: [c.plain for c in table.get_row_at(i)] for i in range(table.row_count)}


async def test_health_table_at_the_nan_step_shows_dashes_not_zero(logdir: Path) -> None:
    app = VizdebugApp(logdir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        screen = app.run_screen
        screen.go_to_step(NAN_STEP)
        table = screen.query_one(HealthTable)
        await wait_for(pilot, lambda: table.shown_step == NAN_STEP, what="the NaN step")
        rows = _rows(table)
        fc2 = rows["block.fc2"]
        assert fc2[5] == "-"  # all-NaN output gradient: no l2 (the file stores 0.0)
        assert "NaN(grad_output)" in fc2[-1] and "NaN(output)" in fc2[-1]
        assert "vanishing" not in fc2[-1]
        weight = rows["block.fc1.weight"]
        assert weight[5] == "-"  # its gradient: NaN, +Inf and -Inf, nothing finite
        assert weight[6] != "-"  # its weight is fine
        assert "+Inf(grad)" in weight[-1] and "-Inf(grad)" in weight[-1]
        assert all("vanishing" not in r[-1] for r in rows.values())
        # each non-finite kind has its own colour
        styles = {
            span.style for span in table.get_row_at(table.names.index("block.fc1.weight"))[-1].spans
        }
        assert len(styles) >= 3


async def test_s_reaches_the_nan_steps_snapshot_and_the_one_after(tmp_path: Path) -> None:
    run = make_gap_run(tmp_path / "runs" / "gap")
    app = VizdebugApp(run)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        screen = app.run_screen
        inspector = screen.query_one(TensorInspector)
        await pilot.press("home", "s")
        await wait_for(pilot, lambda: inspector.tensors, what="the NaN step's snapshot")
        assert screen.step == GAP_NAN_STEP
        assert screen.active_tab == "inspector"
        await pilot.press("s")  # the next snapshot is at a step without statistics
        assert screen.step == GAP_NAN_STEP + 1
        title = screen.query_one("#tensor-list").border_title
        await wait_for(
            pilot,
            lambda: str(screen.query_one("#tensor-list").border_title).endswith(
                str(GAP_NAN_STEP + 1)
            ),
            what=f"the snapshot of step {GAP_NAN_STEP + 1} (was {title})",
        )
        bar = str(screen.query_one(StepBar).content)
        assert "no statistics at this step" in bar
        assert f"of {GAP_NAN_STEP + 2}" in bar
        await pilot.press("s")  # wraps to the first snapshot
        assert screen.step == GAP_NAN_STEP


async def test_slash_filters_modules_tags_and_health_rows(logdir: Path) -> None:
    app = VizdebugApp(logdir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        screen = app.run_screen
        table = screen.query_one(HealthTable)
        await wait_for(pilot, lambda: table.row_count == 7, what="health rows")
        await pilot.press("slash")
        bar = screen.query_one(FilterBar)
        assert bar.has_focus and bar.display
        await pilot.press("F", "c", "1")  # case-insensitive; keys type, they do not act
        await wait_for(pilot, lambda: table.row_count == 2, what="filtered rows")
        assert table.names == ["block.fc1", "block.fc1.weight"]
        assert screen.active_tab == "health"  # "1" was typed, not the Health-tab key
        tree = screen.query_one(ModuleTree)
        shown = [n.data for n in tree.root.children]
        assert shown == ["block"]  # the parent of a match stays, to hold it
        await pilot.press("enter")
        assert not bar.has_focus and bar.display  # the kept filter stays visible
        await pilot.press("5")
        tags = screen.query_one(ScalarView)
        assert tags.tags == []  # no tag contains "fc1"
        await pilot.press("slash", "backspace", "backspace", "backspace", "l", "o")
        await wait_for(pilot, lambda: tags.tags == ["loss"], what="the loss tag")
        await pilot.press("escape")  # clears the filter
        assert not bar.display and bar.value == ""
        await pilot.press("1")
        await wait_for(pilot, lambda: table.row_count == 7, what="every row back")


async def test_runs_list_follows_a_growing_run_without_r(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "growing"
    w = vizdebug.Writer(run, framework="torch", flush_secs=0.05)
    try:
        for step in range(3):
            w.stats("m", "output", reference_stats(np.ones(4, dtype=np.float32)), step=step)
        w.flush()
        app = VizdebugApp(tmp_path / "runs")
        async with app.run_test(size=SIZE) as pilot:
            await wait_loaded(pilot)
            screen = app.run_screen
            runs = screen.query_one(RunsList)

            def shown() -> str:
                return str(runs.get_option_at_index(0).prompt) if runs.option_count else ""

            await wait_for(pilot, lambda: "3 steps" in shown(), what="3 steps")
            for step in range(3, 40):
                w.stats("m", "output", reference_stats(np.ones(4, dtype=np.float32)), step=step)
            w.scalar("loss", 1.0, step=41)  # a step with no statistics still counts
            w.flush()
            await wait_for(pilot, lambda: "42 steps" in shown(), what="42 steps, no r")
            assert "of 42 · 40 recorded" in str(screen.query_one(StepBar).content)
    finally:
        w.close()
