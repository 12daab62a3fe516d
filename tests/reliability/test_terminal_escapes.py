"""Hostile names in a real run cannot drive a real terminal (tmux) under `show` and `tui`.

A real torch training writes a run whose module names, scalar tag and run-directory name carry
an OSC title sequence (ESC ]0;... BEL), a clear-screen (ESC[2J) and a right-to-left override,
and whose poisoned module makes an anomaly message quoting such a name. ``vizdebug show`` and
``vizdebug tui`` then run in a tmux pane of a fixed size; the test reads back what tmux made of
the bytes: the pane's title (which an OSC 0 would set), its text (which ESC[2J would wipe) and
its escape-coded capture (``capture-pane -e``: only tmux's own colour codes may appear). A
control test first proves the harness sees an injection when one happens.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

TITLE = "\x1b]0;PWNED\x07"  # OSC 0: set the window/pane title
CLEAR = "\x1b[2J\x1b[H"  # erase the screen, cursor home
RLO = "\u202e"  # right-to-left override
MODULES = {
    "title": f"enc{TITLE}oder",
    "clear": f"wipe{CLEAR}r",
    "rlo": f"layer{RLO}gnp_exe",
}
RUN_NAME = f"run{TITLE.replace('PWNED', 'DIRTITLE')}"
TAG = f"loss{TITLE.replace('PWNED', 'TAGTITLE')}"
WIDTH, HEIGHT = 160, 50

TRAIN = f"""
import sys, warnings, logging
from collections import OrderedDict
import torch, vizdebug
from torch import nn

logging.basicConfig()
warnings.simplefilter("always")

class Poison(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
    def forward(self, x):
        self.calls += 1
        return x * float("nan") if self.calls == 3 else x

names = {MODULES!r}
model = nn.Sequential(OrderedDict([
    (names["title"], nn.Linear(4, 8)),
    (names["clear"], Poison()),
    (names["rlo"], nn.Linear(8, 2)),
]))
torch.manual_seed(0)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
with vizdebug.watch(model, opt, logdir=sys.argv[1], every=1, live=False) as watch:
    for _ in range(5):
        opt.zero_grad()
        loss = model(torch.randn(3, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        watch.step(loss=loss, **{{{TAG!r}: 1.0}})
"""


class Pane:
    """One tmux server (its own socket file) with one pane of a fixed size."""

    def __init__(self, socket: str, command: str) -> None:
        self.socket = socket
        self._tmux(
            "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(WIDTH), "-y", str(HEIGHT),
            command,
        )  # fmt: skip
        self._tmux("set-option", "-t", "t", "remain-on-exit", "on")
        self._tmux("set-option", "-t", "t", "history-limit", "20000")
        self.initial_title = self.title()
        self.keys("Enter")  # the script waits for it, so the title above is from before

    def _tmux(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-S", self.socket, *args], capture_output=True, text=True, timeout=30
        )
        if out.returncode != 0:
            raise RuntimeError(f"tmux {args[0]}: {out.stderr.strip()}")
        return out.stdout

    def title(self) -> str:
        return self._tmux("display-message", "-p", "-t", "t", "#{pane_title}").rstrip("\n")

    def text(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "t")

    def escaped(self) -> str:
        return self._tmux("capture-pane", "-p", "-e", "-S", "-", "-t", "t")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def dead(self) -> bool:
        return self._tmux("display-message", "-p", "-t", "t", "#{pane_dead}").strip() == "1"

    def wait_for(self, needle: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if needle in text:
                return text
            time.sleep(0.25)
        raise AssertionError(f"{needle!r} never appeared; the pane shows:\n{self.text()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=30)


MakePane = Callable[[list[str]], Pane]


@pytest.fixture
def pane_factory(tmp_path: Path) -> Iterator[MakePane]:
    panes: list[Pane] = []

    def make(argv: list[str]) -> Pane:
        script = tmp_path / f"cmd{len(panes)}.sh"
        env = {
            "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO)),
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", str(tmp_path)),
            "VIZDEBUG_LOGDIR": str(tmp_path / "default-runs"),
            "TERM": "tmux-256color",
            "LANG": "C.UTF-8",
        }
        lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
        lines.append("unset COLUMNS LINES TMUX")  # the pane's own size, not an inherited one
        lines.append("read _go")
        lines.append(" ".join(shlex.quote(a) for a in argv) + "; echo __EXIT__$?")
        script.write_text("\n".join(lines) + "\n")
        # The server's socket lives in the test's directory: nothing is left behind.
        pane = Pane(str(tmp_path / f"tmux{len(panes)}"), f"sh {shlex.quote(str(script))}")
        panes.append(pane)
        return pane

    yield make
    for pane in panes:
        pane.close()


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A real torch run with hostile names; returns (run dir, the training's stderr)."""
    run = tmp_path_factory.mktemp("hostile") / RUN_NAME
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))}
    env.pop("VIZDEBUG_SINKS", None)
    out = subprocess.run(
        [sys.executable, "-c", TRAIN, str(run)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return run, out.stderr


def _only_tmux_sgr(escaped: str) -> list[str]:
    """Escape sequences in a ``capture-pane -e`` dump that are not plain SGR colour codes."""
    without_sgr = re.sub(r"\x1b\[[0-9;:]*m", "", escaped)
    return re.findall(r"\x1b.{0,12}", without_sgr)


def test_harness_sees_a_raw_injection(pane_factory: MakePane) -> None:
    """Control: the same bytes printed raw do retitle and clear the pane (so the tests can fail)."""
    pane = pane_factory(
        [sys.executable, "-c", f"print('before'); print({TITLE + 'x' + CLEAR!r}); print('after')"]
    )
    pane.wait_for("__EXIT__0")
    assert pane.title() == "PWNED" != pane.initial_title
    assert "before" not in pane._tmux("capture-pane", "-p", "-t", "t")  # wiped from the screen


def test_training_warnings_and_logs_are_safe(hostile_run: tuple[Path, str]) -> None:
    _run, stderr = hostile_run
    assert "NonFiniteWarning" in stderr or "NaN" in stderr, stderr
    for bad in ("\x1b", "\x07", RLO):
        assert bad not in stderr, stderr
    assert "\\x1b" in stderr  # the name is there, visibly escaped


@pytest.mark.slow
def test_show_in_a_terminal(hostile_run: tuple[Path, str], pane_factory: MakePane) -> None:
    run, _ = hostile_run
    pane = pane_factory([sys.executable, "-m", "vizdebug.cli", "show", str(run)])
    text = pane.wait_for("__EXIT__")
    assert "__EXIT__0" in text, text
    assert pane.title() == pane.initial_title and "TITLE" not in pane.title()
    assert "PWNED" in text and "\\x1b]0;PWNED\\x07" in text.replace("\n", "")
    assert "\\x1b[2J" in text.replace("\n", "") and "\\u202e" in text.replace("\n", "")
    assert "anomalies" in text and "run " in text  # the top of the output was not wiped
    assert RLO not in text
    assert _only_tmux_sgr(pane.escaped()) == []


@pytest.mark.slow
def test_runs_in_a_terminal(hostile_run: tuple[Path, str], pane_factory: MakePane) -> None:
    run, _ = hostile_run
    pane = pane_factory([sys.executable, "-m", "vizdebug.cli", "runs", str(run.parent)])
    text = pane.wait_for("__EXIT__")
    assert "__EXIT__0" in text, text
    assert pane.title() == pane.initial_title
    # At the pane's width the run column is folded onto several lines: join its pieces.
    rows = [line.split("│")[1:-1] for line in text.splitlines() if line.count("│") > 2]
    assert "run\\x1b]0;DIRTITLE\\x07" in "".join(cells[0].strip() for cells in rows), text
    assert _only_tmux_sgr(pane.escaped()) == []


@pytest.mark.slow
def test_tui_in_a_terminal(hostile_run: tuple[Path, str], pane_factory: MakePane) -> None:
    run, _ = hostile_run
    pane = pane_factory([sys.executable, "-m", "vizdebug.cli", "tui", str(run)])
    try:
        # The module tree and the health table list the modules once the run is loaded.
        text = pane.wait_for("gnp_exe", timeout=120)
        deadline = time.monotonic() + 60
        while "\\x1b[2J" not in text and time.monotonic() < deadline:
            time.sleep(0.25)
            text = pane._tmux("capture-pane", "-p", "-t", "t")
        screen = pane._tmux("capture-pane", "-p", "-t", "t")
        assert "\\x1b[2J" in screen and "\\u202e" in screen, screen
        assert "PWNED" not in pane.title() and "TITLE" not in pane.title()
        assert RLO not in screen
        # Open the anomalies (a) to render the anomaly message and its module too.
        pane.keys("a")
        time.sleep(2)
        screen = pane._tmux("capture-pane", "-p", "-t", "t")
        assert "PWNED" not in pane.title()
        assert "\\x1b" in screen and RLO not in screen
        # The screen was not wiped: the footer and the header are still drawn.
        lines = [line for line in screen.splitlines() if line.strip()]
        assert len(lines) > HEIGHT // 2, screen
    finally:
        pane.keys("q")
    deadline = time.monotonic() + 30
    while not pane.dead() and time.monotonic() < deadline:
        time.sleep(0.25)
    assert pane.dead(), "the TUI did not quit on q"
    assert "PWNED" not in pane.title()
