"""Pilot tests of what the TUI shows when something went wrong: NaN as NaN, the snapshot of
the NaN step reachable, one step count in the step bar and the runs list, and ``/`` filtering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from textual.widgets import Static

import vizdebug
from vizdebug.stats import reference_stats
from vizdebug.tui.app import VizdebugApp
from vizdebug.tui.widgets import (
    FilterBar,
    HealthTable,
    LineChart,
    ModuleTree,
    RunsList,
    ScalarView,
    StepBar,
    TensorInspector,
    ValueGrid,
)
from vizdebug.tui.widgets.health_table import COLUMNS

from .conftest import wait_for, wait_loaded
from .runs import GAP_NAN_STEP, NAN_STEP, STEPS, make_gap_run

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
        assert (
            fc2[COLUMNS.index("grad l2")] == "-"
        )  # all-NaN output gradient: no l2 (the file stores 0.0)
        assert (
            "NaN(grad_output)" in fc2[COLUMNS.index("flags")]
            and "NaN(output)" in fc2[COLUMNS.index("flags")]
        )
        assert "vanishing" not in fc2[COLUMNS.index("flags")]
        weight = rows["block.fc1.weight"]
        assert (
            weight[COLUMNS.index("grad l2")] == "-"
        )  # its gradient: NaN, +Inf and -Inf, nothing finite
        assert weight[COLUMNS.index("weight l2")] != "-"  # its weight is fine
        assert (
            "+Inf(grad)" in weight[COLUMNS.index("flags")]
            and "-Inf(grad)" in weight[COLUMNS.index("flags")]
        )
        assert all("vanishing" not in r[COLUMNS.index("flags")] for r in rows.values())
        # each non-finite kind has its own colour
        styles = {
            span.style
            for span in table.get_row_at(table.names.index("block.fc1.weight"))[
                COLUMNS.index("flags")
            ].spans
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
        await pilot.press("1", "s")  # on a step with a snapshot: that snapshot first
        assert screen.step == GAP_NAN_STEP and screen.active_tab == "inspector"


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


@pytest.mark.parametrize("size", [(80, 24), (140, 40), (203, 51)])
async def test_scalar_chart_fills_its_pane_with_axes_and_readout(
    logdir: Path, size: tuple[int, int]
) -> None:
    app = VizdebugApp(logdir)
    async with app.run_test(size=size) as pilot:
        await wait_loaded(pilot)
        screen = app.run_screen
        await pilot.press("5")
        chart = screen.query_one("#scalar-chart", LineChart)
        await wait_for(pilot, lambda: chart.cursor_value is not None, what="the loss chart")
        pane = screen.query_one("#scalars")
        # the chart takes the pane's height but the title line (was 6 rows of 40)
        assert chart.size.height >= pane.size.height - 2
        await pilot.press("home")
        assert chart.cursor_value == (0, 2.0)
        lines = [chart.render_line(y) for y in range(chart.size.height)]
        texts = ["".join(seg.text for seg in strip) for strip in lines]
        width = chart.size.width
        assert all(strip.cell_length == width for strip in lines)  # nothing past the edge
        assert "step 0: 2" in texts[0]  # the readout at the cursor
        assert "┤" in texts[1] and texts[-1].lstrip().startswith("└")  # y and step axes
        assert texts[-1].rstrip().endswith(str(STEPS - 1))  # the last step, whole


@pytest.mark.parametrize("width", [80, 120, 203])
async def test_inspector_grid_shows_whole_numbers_only(width: int) -> None:
    from textual.app import App, ComposeResult

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield TensorInspector()

    app = One()
    async with app.run_test(size=(width, 30)) as pilot:
        inspector = app.query_one(TensorInspector)
        arr = -np.linspace(1e-5, 1.2345, 4 * 64).reshape(4, 64)  # 10-character cells
        arr[0, 0] = np.nan
        inspector.set_tensors({"w": arr}, title="t")
        await pilot.pause()
        grid = app.query_one(ValueGrid)
        await wait_for(pilot, lambda: grid.size.width > 0 and grid.shown_cols < 64)
        await pilot.pause()
        used = grid._row_label_column_width + sum(
            c.get_render_width(grid) for c in grid.columns.values()
        )
        assert used <= grid.size.width - grid.styles.scrollbar_size_vertical
        assert grid.shown_cols >= 1 and grid.total_cols == 64
        info = str(app.query_one("#index-info", Static).content)
        assert f"{grid.shown_cols} of 64 columns" in info
        assert "legend" in info  # a NaN in the slice: its colour is explained


async def test_long_anomaly_message_is_wrapped_whole(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "long"
    words = " ".join(f"word{i}" for i in range(80))  # ~550 characters
    with vizdebug.Writer(run, framework="torch") as w:
        w.stats("m", "output", reference_stats(np.ones(4, dtype=np.float32)), step=0)
        w.anomaly("nan", step=0, module="m", role="output", message=words + " END", nan=1)
    app = VizdebugApp(run)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("3")
        detail = app.run_screen.query_one("#anomaly-detail", Static)
        await wait_for(pilot, lambda: "END" in str(detail.content), what="the detail")
        await pilot.pause()
        box = app.run_screen.query_one("#anomaly-detail-box")
        lines = [
            "".join(seg.text for seg in detail.render_line(y)).rstrip()
            for y in range(detail.size.height)
        ]
        assert len(lines) >= 4  # wrapped, not one cut line
        assert " ".join(lines).split()[-1] == "END"  # the message's end is on screen
        assert detail.size.width <= box.size.width


def _lines(widget: object) -> list[str]:
    height = widget.size.height  # type: ignore[attr-defined]
    strips = [widget.render_line(y) for y in range(height)]  # type: ignore[attr-defined]
    assert all(s.cell_length == widget.size.width for s in strips)  # type: ignore[attr-defined]
    return ["".join(seg.text for seg in s) for s in strips]


@pytest.mark.parametrize("width", [80, 81, 97, 113, 131, 160, 203])
async def test_no_stray_glyphs_at_the_right_edge(logdir: Path, width: int) -> None:
    """Series charts and histogram: every line exactly the widget's width, the last column
    a real data column (the last step's value, the last bin), whatever the width."""
    from vizdebug.tui.widgets import HistogramView

    app = VizdebugApp(logdir)
    async with app.run_test(size=(width, 24)) as pilot:
        await wait_loaded(pilot)
        screen = app.run_screen
        screen.select_module("block.fc2")
        await pilot.press("2")
        chart = screen.query_one("#spark-mean", LineChart)
        await wait_for(pilot, lambda: chart.cursor_value is not None, what="the series")
        await pilot.pause()
        for key in ("mean", "std", "l2"):
            texts = _lines(screen.query_one(f"#spark-{key}", LineChart))
            assert texts[-2][-1] != " "  # the bottom plot row ends with the last step's bar
            assert texts[-1].rstrip().endswith(str(STEPS - 1))  # the step axis, whole
        hist = screen.query_one("#series-hist", HistogramView)
        hist.styles.height = 8
        await pilot.pause()
        _lines(hist)


async def test_d_opens_the_stepper_on_the_nan_steps_snapshot(tmp_path: Path) -> None:
    from vizdebug.tui.screens.snapshot_screen import SnapshotScreen

    run = make_gap_run(tmp_path / "runs" / "gap")
    app = VizdebugApp(run)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        screen = app.run_screen
        await pilot.press("a")  # the anomaly: the NaN step
        assert screen.step == GAP_NAN_STEP
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, SnapshotScreen), what="stepper")
        stepper = app.screen
        assert isinstance(stepper, SnapshotScreen)
        assert stepper.refs[stepper.snap].step == GAP_NAN_STEP
        await wait_for(pilot, lambda: stepper.current is not None, what="its first module")
        await pilot.press("n")  # the next snapshot: the step after, without statistics
        assert stepper.refs[stepper.snap].step == GAP_NAN_STEP + 1


async def test_runs_list_follows_a_live_run_that_is_not_open(tmp_path: Path) -> None:
    make_gap_run(tmp_path / "runs" / "closed")
    w = vizdebug.Writer(tmp_path / "runs" / "other", framework="torch", flush_secs=0.05)
    try:
        # (run.json's last_step, what a run that is not open is summarized from, follows
        # the scalars only: the loss is logged each step, as training does)
        w.stats("m", "output", reference_stats(np.ones(4, dtype=np.float32)), step=0)
        w.scalar("loss", 1.0, step=0)
        w.flush()
        app = VizdebugApp(tmp_path / "runs")
        async with app.run_test(size=SIZE) as pilot:
            await wait_loaded(pilot)
            screen = app.run_screen
            screen.open_run(tmp_path / "runs" / "closed")
            runs = screen.query_one(RunsList)

            def other() -> str:
                for i, entry in enumerate(runs.entries):
                    if entry.path.name == "other":
                        return str(runs.get_option_at_index(i).prompt)
                return ""

            await wait_for(pilot, lambda: "1 steps" in other(), what="the live run listed")
            for step in range(1, 25):
                w.stats("m", "output", reference_stats(np.ones(4, dtype=np.float32)), step=step)
                w.scalar("loss", 1.0, step=step)
            w.flush()
            await wait_for(pilot, lambda: "25 steps" in other(), what="25 steps without r")
            assert screen.store is not None and screen.store.name == "closed"
    finally:
        w.close()
