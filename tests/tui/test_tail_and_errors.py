"""Live tail, bad input, other tools' runs, and the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from textual.widgets import Static

import vizdebug
from vizdebug.cli import main
from vizdebug.stats import reference_stats
from vizdebug.tui.app import VizdebugApp
from vizdebug.tui.widgets import (
    AnomalyTable,
    HealthTable,
    LineChart,
    MessageBar,
    RunsList,
    ScalarView,
)

from .conftest import wait_for, wait_loaded
from .runs import make_demo_run

SIZE = (140, 40)


@pytest.mark.asyncio
async def test_live_run_updates_on_screen(tmp_path: Path) -> None:
    run_dir = tmp_path / "live"
    stats = reference_stats(np.linspace(-1, 1, 16))
    writer = vizdebug.Writer(run_dir, flush_secs=0.05)
    try:
        writer.stats("net.a", "output", stats, step=0)
        writer.flush()
        app = VizdebugApp(run_dir)
        async with app.run_test(size=SIZE) as pilot:
            await wait_loaded(pilot)
            screen = app.run_screen
            await wait_for(pilot, lambda: screen.live, what="the run marked live")
            assert screen.step == 0
            for step in range(1, 4):
                writer.stats("net.a", "output", stats, step=step)
                writer.stats("net.b", "output", stats, step=step)
            writer.anomaly("nan", step=3, module="net.b", message="NaN")
            table = screen.query_one(HealthTable)
            await wait_for(pilot, lambda: screen.step == 3, what="the cursor follows new steps")
            await wait_for(pilot, lambda: table.row_count == 2, what="the new module")
            await wait_for(
                pilot, lambda: screen.query_one(AnomalyTable).row_count == 1, what="the anomaly"
            )
            await pilot.press("left")  # off the end: the cursor stays put as the run grows
            writer.stats("net.a", "output", stats, step=4)
            await wait_for(pilot, lambda: app.store is not None and app.store.steps[-1] == 4)
            assert screen.step == 2
            await pilot.press("end")
            writer.stats("net.a", "output", stats, step=5)
            await wait_for(pilot, lambda: screen.step == 5, what="following again after End")
    finally:
        writer.close()


def _event_file(run_dir: Path) -> Path:
    return next(p for p in run_dir.iterdir() if "tfevents" in p.name)


@pytest.mark.asyncio
async def test_corrupt_record_is_reported_and_rest_shown(tmp_path: Path) -> None:
    run_dir = make_demo_run(tmp_path / "runs" / "demo")
    path = _event_file(run_dir)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte inside a record: its checksum fails
    path.write_bytes(bytes(data))
    app = VizdebugApp(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        bar = app.run_screen.query_one(MessageBar)
        assert "unreadable record" in bar.text
        assert "byte" in bar.text
        assert app.store is not None and len(app.store.steps) >= 5


@pytest.mark.asyncio
async def test_truncated_tail_of_a_finished_run_is_a_warning(tmp_path: Path) -> None:
    run_dir = make_demo_run(tmp_path / "runs" / "demo")
    path = _event_file(run_dir)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    app = VizdebugApp(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        bar = app.run_screen.query_one(MessageBar)
        await wait_for(pilot, lambda: "could not be read whole" in bar.text, what="warning")
        assert path.name in bar.text and "-error" not in bar.classes  # a warning, not an error
        assert app.store is not None and app.store.steps  # the rest is shown
        runs = app.run_screen.query_one(RunsList)
        await wait_for(
            pilot,
            lambda: (
                runs.option_count and "not read whole" in str(runs.get_option_at_index(0).prompt)
            ),
            what="the runs list's mark",
        )


@pytest.mark.asyncio
async def test_no_runs_message(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    app = VizdebugApp(empty)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        assert app.run_screen.query_one(MessageBar).text.startswith("No runs under")
        await pilot.press("right", "2", "3", "4", "5", "t", "s", "a")  # nothing to show: no crash
        assert app.store is None


@pytest.mark.asyncio
async def test_runs_list_switches_runs(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_demo_run(root / "demo")
    with vizdebug.Writer(root / "other") as w:
        w.scalar("only", 1.0, step=0)
    app = VizdebugApp(root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        runs = app.run_screen.query_one(RunsList)
        await wait_for(pilot, lambda: len(runs.entries) == 2 and runs.entries[0].steps)
        labels = [e.label for e in runs.entries]
        assert labels == ["demo", "other"]
        runs.focus()
        for name in ("demo", "other"):
            await pilot.press("up" if name == "demo" else "down")
            await pilot.press("enter")
            await wait_for(
                pilot,
                lambda n=name: (
                    app.store is not None
                    and app.store.name == n  # type: ignore[misc]
                    and app.run_screen.loaded
                ),
            )


@pytest.mark.asyncio
async def test_tensorboardx_run_shows_scalars_and_histograms(tmp_path: Path) -> None:
    from tensorboardX import SummaryWriter

    run_dir = tmp_path / "tbx"
    w = SummaryWriter(str(run_dir))
    rng = np.random.default_rng(0)
    for step in range(5):
        w.add_scalar("train/loss", 1.0 / (step + 1), step)
        w.add_histogram("fc.weight", rng.standard_normal(100), step)
    w.close()
    app = VizdebugApp(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        screen = app.run_screen
        assert app.store is not None and app.store.steps == [0, 1, 2, 3, 4]
        await pilot.press("5")
        view = screen.query_one(ScalarView)
        assert view.tags == ["train/loss", "histogram: fc.weight"]
        title = str(screen.query_one("#scalar-title", Static).content)
        assert title == "train/loss"
        chart = screen.query_one("#scalar-chart", LineChart)
        at = chart.cursor_value
        assert at is not None and at[0] == 4 and at[1] == pytest.approx(0.2)
        view.query_one("#scalar-tags").focus()
        await pilot.press("down")
        await wait_for(pilot, lambda: view.current == "histogram: fc.weight")
        await pilot.pause()
        assert "fc.weight at step 4" in str(screen.query_one("#scalar-hist").border_title)


def test_cli_nonexistent_path_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["tui", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "does not exist" in err


def test_cli_help_lists_tui(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tui", "--help"])
    assert "log directory" in capsys.readouterr().out
