"""The live debugger in the TUI, against a real training subprocess (tests/torch/live_train.py).

Also: observing while another client controls, the process killed while attached, the offline
snapshot stepper on a real anomaly snapshot, live runs in the runs list, and ``--attach``.
"""

from __future__ import annotations

import asyncio
import runpy
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from textual.pilot import Pilot
from textual.widgets import Input, OptionList

import vizdebug
from vizdebug.cli import main
from vizdebug.live import LiveClient
from vizdebug.tui.app import VizdebugApp
from vizdebug.tui.live_actions import live_runs_to_attach
from vizdebug.tui.live_marks import MARK
from vizdebug.tui.screens.live_screen import LiveScreen
from vizdebug.tui.screens.prompt import LivePicker, PromptScreen
from vizdebug.tui.screens.snapshot_screen import SnapshotScreen
from vizdebug.tui.snapshot_steps import snapshot_points, split_name
from vizdebug.tui.widgets import MessageBar, RunsList, TensorInspector, ValueGrid
from vizdebug.tui.widgets.breakpoint_list import BreakpointList, describe_breakpoint
from vizdebug.tui.widgets.live_status import LiveStatus

from .conftest import wait_for, wait_loaded
from .live_helpers import REPO, fake_live_run, finish, pause_at, start_training, wait_live

SIZE = (150, 45)
TIMEOUT = 60.0


async def live_screen(pilot: Pilot[None], app: VizdebugApp) -> LiveScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), what="the live screen")
    assert isinstance(app.screen, LiveScreen)
    return app.screen


async def paused_at(pilot: Pilot[None], status: LiveStatus, step: int, module: str) -> None:
    await wait_for(
        pilot,
        lambda: (
            status.state == "paused"
            and status.position is not None
            and (status.position["step"], status.position["module"]) == (step, module)
        ),
        timeout=TIMEOUT,
        what=f"paused at step {step} {module}",
    )


async def fetch(pilot: Pilot[None], screen: LiveScreen, name: str) -> np.ndarray:
    """Select ``name`` in the tensor list; return what the inspector then holds."""
    inspector = screen.query_one(TensorInspector)
    await wait_for(pilot, lambda: name in screen.tensor_names, timeout=TIMEOUT, what=name)
    options = screen.query_one("#step-tensors", OptionList)
    options.focus()
    options.highlighted = screen.tensor_names.index(name)
    await wait_for(pilot, lambda: inspector.selected == name, timeout=TIMEOUT, what=f"{name} shown")
    return inspector.tensors[name]


async def answer_prompt(pilot: Pilot[None], app: VizdebugApp, key: str, text: str) -> None:
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="the prompt")
    await pilot.press(*text, "enter")
    await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), what="prompt closed")


@pytest.mark.asyncio
async def test_attach_step_fetch_break_and_run_to_the_end(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "train"
    proc = start_training(run_dir, steps=200, nan_step=150)
    try:
        live = wait_live(run_dir)
        first = pause_at(live)
        assert first < 100
        app = VizdebugApp(tmp_path / "runs", attach=[live])
        async with app.run_test(size=SIZE) as pilot:
            screen = await live_screen(pilot, app)
            status = screen.query_one(LiveStatus)
            await paused_at(pilot, status, first, "conv")
            assert status.control == "controlling"
            assert status.position is not None and status.position["module_type"] == "Conv2d"
            assert "Conv2d" in str(status.content) and f"step {first}" in str(status.content)

            # the values the inspector holds are what the model computes from input and weights
            got = {
                n: await fetch(pilot, screen, n) for n in ("input0", "param:weight", "param:bias")
            }
            out = await fetch(pilot, screen, "output")
            expect = torch.nn.functional.conv2d(
                torch.from_numpy(got["input0"]),
                torch.from_numpy(got["param:weight"]),
                torch.from_numpy(got["param:bias"]),
                padding=1,
            )
            np.testing.assert_allclose(out, expect.numpy(), rtol=1e-5, atol=1e-6)
            assert out.shape == (16, 8, 8, 8)
            grid = screen.query_one(ValueGrid)
            await wait_for(pilot, lambda: grid.row_count == 8)
            shown = [c.plain for c in grid.get_row_at(0)]
            assert shown == [("0" if v == 0 else f"{v:.4g}") for v in out[0, 0, 0].astype(float)]

            # step: the next modules of the forward pass
            for module in ("act", "flat", "fc1"):
                await pilot.press("s")
                await paused_at(pilot, status, first, module)
            assert status.position is not None and status.position["chain"] == [""]
            assert status.reason == "step"
            # the selected role stays selected from one point to the next
            await wait_for(pilot, lambda: screen.shown_tensor == "output", timeout=TIMEOUT)

            await answer_prompt(pilot, app, "g", str(first + 5))
            await paused_at(pilot, status, first + 5, "conv")
            assert status.reason == f"reached step {first + 5}"
            await pilot.press("n")
            await paused_at(pilot, status, first + 6, "conv")

            await answer_prompt(pilot, app, "b", "nan")
            breaks = screen.query_one(BreakpointList)
            await wait_for(pilot, lambda: len(breaks.break_ids) == 1, what="the breakpoint")
            before = screen.generation
            await pilot.press("c")
            await wait_for(pilot, lambda: screen.generation > before, what="resumed")
            await pilot.press("p")
            await wait_for(
                pilot,
                lambda: status.state == "paused" and status.position["step"] > first + 6,  # type: ignore[index]
                timeout=TIMEOUT,
                what="paused by p",
            )
            if "NaN" not in status.reason:  # p landed before the NaN step (it nearly always does)
                assert status.reason == "paused"
                await pilot.press("c")
            await paused_at(pilot, status, 150, "fc2")
            assert "NaN" in status.reason
            inp = await fetch(pilot, screen, "input0")
            assert np.isnan(inp[0, 0]) and np.isfinite(inp[1:]).all()

            breaks.focus()
            await pilot.press("delete")
            await wait_for(pilot, lambda: breaks.break_ids == [], what="breakpoint cleared")
            await pilot.press("c")
            await asyncio.to_thread(finish, proc, 200)
            await wait_for(pilot, lambda: status.state == "disconnected", what="disconnected")
            assert "gone" in screen.query_one("#step-messages", MessageBar).text
            await pilot.press("s")  # nothing to control: a notification, no traceback
            await pilot.press("escape")  # from the breakpoint list: back to the stepper
            await pilot.pause()
            assert isinstance(app.screen, LiveScreen) and app.focused is not None
            assert app.focused.id == "step-tensors"
            await pilot.press("escape")  # on the stepper: detach
            await wait_for(pilot, lambda: not isinstance(app.screen, LiveScreen))
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.asyncio
async def test_observer_take_control_and_process_killed(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "train"
    proc = start_training(run_dir, steps=100_000, nan_step=10**9)
    try:
        live = wait_live(run_dir)
        other = LiveClient.attach(live)  # controls first
        other.run_to(3)
        other.wait_event("paused", timeout=TIMEOUT)
        app = VizdebugApp(run_dir, attach=[live])
        async with app.run_test(size=SIZE) as pilot:
            screen = await live_screen(pilot, app)
            status = screen.query_one(LiveStatus)
            await paused_at(pilot, status, 3, "conv")
            assert status.control == "observing" and not screen.controlling
            assert "Observing" in screen.query_one("#step-messages", MessageBar).text
            # observers may look at tensors
            weight = await fetch(pilot, screen, "param:weight")
            assert weight.shape == (8, 1, 3, 3)
            generation = screen.generation
            await pilot.press("s")  # refused locally: nothing is sent
            await pilot.press("o")  # the other client still controls
            await pilot.pause(0.3)
            assert screen.generation == generation and not screen.controlling
            other.close()  # the controller detaches: the run goes on at once, control is free
            bar = screen.query_one("#step-messages", MessageBar)
            await wait_for(pilot, lambda: "detached" in bar.text, what="control free message")
            assert "another client controls" not in bar.text and "press o" in bar.text
            await wait_for(pilot, lambda: status.state == "running", what="released")
            await wait_for(
                pilot,
                lambda: status.step is not None and status.step > 3,
                timeout=TIMEOUT,
                what="the running step shown",
            )
            assert f"step {status.step}" in str(status.content)
            assert "control free" in status.control
            await pilot.press("o")
            await wait_for(pilot, lambda: screen.controlling, what="control taken")
            assert status.control == "controlling"
            await pilot.press("p")
            await wait_for(pilot, lambda: status.state == "paused", timeout=TIMEOUT, what="paused")
            assert status.position is not None
            where = (status.position["step"], status.position["module"])
            await pilot.press("s")
            await wait_for(
                pilot,
                lambda: (status.position or {}).get("module") not in (None, where[1]),
                timeout=TIMEOUT,
                what="stepped",
            )

            proc.kill()  # the training process dies while attached and paused
            await wait_for(pilot, lambda: status.state == "disconnected", timeout=TIMEOUT)
            assert "gone" in screen.query_one("#step-messages", MessageBar).text
            await pilot.press("c")
            await pilot.press("b")
            assert isinstance(app.screen, LiveScreen)  # no prompt: nothing to control
    finally:
        proc.kill()
        proc.wait()


def test_snapshot_points_order() -> None:
    names = ["head/output0", "(root)/input0", "embed/input0", "embed/output0", "embed#1/output0"]
    assert split_name("enc.fc#2/output0") == ("enc.fc", 2, "output0")
    assert split_name("(root)/input0") == ("", 0, "input0")
    captured = ["embed/input0", "embed/output0", "embed#1/output0", "head/output0", "(root)/input0"]
    points = snapshot_points(names, captured=captured)
    assert [(p.module, p.call) for p in points] == [
        ("embed", 0),
        ("embed", 1),
        ("head", 0),
        ("", 0),
    ]
    by_structure = snapshot_points(names, structure=["", "embed", "head"])
    assert [(p.module, p.call) for p in by_structure] == [
        ("", 0),
        ("embed", 0),
        ("embed", 1),
        ("head", 0),
    ]
    assert list(points[0].tensors) == ["input0", "output0"]
    assert describe_breakpoint({"kind": "grad_norm_gt", "value": 10.0, "module": "fc*"}) == (
        "grad norm > 10 @fc*"
    )


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:step 7")
async def test_offline_stepping_through_an_anomaly_snapshot(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "nan"
    runpy.run_path(str(REPO / "examples" / "torch_nan.py"))["main"](str(run_dir))
    app = VizdebugApp(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        store = app.store
        assert store is not None
        await wait_for(pilot, lambda: bool(store.snapshots), what="snapshots read")
        first = min(r.step for r in store.snapshots)
        app.run_screen.go_to_step(first)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, SnapshotScreen))
        screen = app.screen
        assert isinstance(screen, SnapshotScreen)
        status = screen.query_one(LiveStatus)
        await wait_for(pilot, lambda: status.module == "embed", what="the first module")
        assert status.state == "offline" and status.position is not None
        assert status.position["step"] == first == 7
        seen = ["embed"]
        for _ in range(3):
            await pilot.press("s")
            seen.append(str(status.module))
        assert seen == ["embed", "blowup", "head", ""]  # the order modules returned
        await pilot.press("S", "S")
        assert status.module == "blowup" and status.position["module_type"] == "LogLayer"
        assert "anomaly" in status.reason
        inspector = screen.query_one(TensorInspector)
        await wait_for(pilot, lambda: inspector.selected == "output0")
        out = inspector.tensors["output0"]
        inp = screen.loaded[screen.snap][screen.current.tensors["input0"]]  # type: ignore[index,union-attr]
        with np.errstate(invalid="ignore"):
            np.testing.assert_allclose(out, np.log(inp), rtol=1e-6)
        assert np.isnan(out).any()
        options = screen.query_one("#step-tensors", OptionList)
        options.focus()
        await pilot.press("up")
        await wait_for(pilot, lambda: inspector.selected == "input0")
        if len(screen.refs) > 1:
            await pilot.press("n")
            assert status.module == "blowup" and status.position["step"] == screen.refs[1].step
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, SnapshotScreen))


@pytest.mark.asyncio
async def test_runs_list_marks_live_runs_picker_and_unreachable(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for name in ("a", "b", "c"):
        with vizdebug.Writer(root / name) as w:
            w.scalar("loss", 1.0, step=0)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lives = [fake_live_run(root / "a", port), fake_live_run(root / "b", port)]
    assert live_runs_to_attach("", str(root))[1] == lives
    assert live_runs_to_attach(str(root / "a"), None) == (str(root / "a"), [lives[0]])

    app = VizdebugApp(root, attach=lives)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LivePicker), what="the picker")
        await pilot.press("down", "enter")
        screen = await live_screen(pilot, app)
        assert screen.live == lives[1]
        status = screen.query_one(LiveStatus)
        await wait_for(pilot, lambda: status.state == "disconnected", what="refused")
        assert "Cannot attach" in screen.query_one("#step-messages", MessageBar).text
        await pilot.press("escape")
        await wait_loaded(pilot)
        runs = app.run_screen.query_one(RunsList)

        def marked() -> list[str]:
            return [
                runs.get_option_at_index(i).prompt.plain  # type: ignore[union-attr]
                for i in range(runs.option_count)
                if str(runs.get_option_at_index(i).prompt).endswith(MARK)
            ]

        await wait_for(pilot, lambda: len(marked()) == 2, what="live runs marked")
        assert [m.split()[0] for m in marked()] == ["a", "b"]
        runs.focus()
        runs.highlighted = [e.path.name for e in runs.entries].index("c")
        await pilot.press("l")  # c is not live: a notification, no screen
        assert not isinstance(app.screen, LiveScreen)
        runs.highlighted = [e.path.name for e in runs.entries].index("a")
        await pilot.press("l")
        screen = await live_screen(pilot, app)
        assert screen.live == lives[0]


def test_cli_attach_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["tui", str(tmp_path / "empty"), "--attach"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no live runs under" in err and "\n" not in err
    assert main(["tui", "--attach", str(tmp_path / "empty")]) == 2
    assert "has no live training process" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_keys_act_on_the_stepper_whatever_has_focus_and_escape_returns_to_it(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "runs" / "train"
    proc = start_training(run_dir, steps=100_000, nan_step=10**9)
    try:
        live = wait_live(run_dir)
        first = pause_at(live)
        app = VizdebugApp(run_dir, attach=[live])
        async with app.run_test(size=SIZE) as pilot:
            screen = await live_screen(pilot, app)
            status = screen.query_one(LiveStatus)
            await paused_at(pilot, status, first, "conv")
            tensors = screen.query_one("#step-tensors", OptionList)
            assert app.focused is tensors  # the stepper has focus from the start
            assert screen.active_bindings["escape"].binding.description == "Detach"
            await fetch(pilot, screen, "output")
            index = screen.query_one("#tensor-index", Input)
            blurred = index.styles.background
            index.focus()
            await pilot.pause()
            # a clearly visible highlight, and the footer says what Escape does here
            assert index.styles.background != blurred
            assert screen.active_bindings["escape"].binding.description == "Stepper"
            typed = index.value
            await pilot.press("s")  # steps: never typed into the index box
            await paused_at(pilot, status, first, "act")
            assert "s" not in index.value
            await pilot.press("escape")
            await pilot.pause()
            assert app.focused is tensors and isinstance(app.screen, LiveScreen)
            assert screen.active_bindings["escape"].binding.description == "Detach"
            index.focus()
            await pilot.press("1")  # digits do go into the index box
            assert index.value.endswith("1") and index.value != typed
            await pilot.press("c")  # continues, whatever has focus
            await wait_for(pilot, lambda: status.state == "running", what="running")
            assert "c" not in index.value
            # while running, the status says which step training is at
            await wait_for(
                pilot,
                lambda: status.step is not None and status.step > first,
                timeout=TIMEOUT,
                what="the running step",
            )
            assert f"step {status.step}" in str(status.content)
            await answer_prompt(pilot, app, "b", "once:step:100000000")
            breaks = screen.query_one(BreakpointList)
            await wait_for(pilot, lambda: len(breaks.break_ids) == 1, what="the breakpoint")
            assert "(once)" in str(breaks.get_option_at_index(0).prompt)
            index.focus()
            await pilot.press("delete")  # edits the focused index box, as its highlight says
            assert breaks.break_ids != []
            breaks.focus()
            await pilot.press("delete")  # the lit breakpoint list: clears it
            await wait_for(pilot, lambda: breaks.break_ids == [], what="cleared")
            await pilot.press("escape", "escape")  # back to the stepper, then detach
            await wait_for(pilot, lambda: not isinstance(app.screen, LiveScreen))
    finally:
        proc.kill()
        proc.wait()


def test_describe_one_shot_breakpoints() -> None:
    assert describe_breakpoint({"kind": "nan", "once": True}) == "nan (once)"
    assert describe_breakpoint({"kind": "step", "value": 7, "once": False}) == "step:7"
    one = {"kind": "abs_gt", "value": 10.0, "module": "fc*", "once": True}
    assert describe_breakpoint(one) == "|x| > 10 @fc* (once)"


def test_control_wording() -> None:
    from vizdebug.tui.live_control import control_label, control_message, observing_note

    assert control_label(attached=False, controlling=False, free=True) == ""
    assert control_label(attached=True, controlling=True, free=False) == "controlling"
    assert control_label(attached=True, controlling=False, free=True).endswith("control free")
    assert control_message(controlling=True, free=False) == ""
    left = control_message(controlling=False, free=True, left=True)
    assert "detached" in left and "press o" in left and "another client" not in left
    assert "another client controls" in control_message(controlling=False, free=False)
    assert "no client controls" in observing_note(free=True)
    from vizdebug.tui.live_control import gone_message

    assert "gone" in gone_message(7, dropped=False)
    assert "dropped this connection" in gone_message(7, dropped=True)


def test_a_killed_unreaped_process_is_not_running() -> None:
    import os
    import subprocess
    import sys

    from vizdebug.tui.live_control import running

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert running(proc.pid)
        proc.kill()
        deadline = time.monotonic() + 10
        while running(proc.pid):  # a zombie until waited for: not running
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert os.waitpid(proc.pid, os.WNOHANG)[0] in (0, proc.pid)
    finally:
        proc.kill()
        proc.wait()
