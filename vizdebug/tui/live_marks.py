"""Which runs under the app's root serve the live debugger; marked in the runs list.

A worker looks for ``live.json`` files (:func:`vizdebug.live.find_live_runs`) every
:data:`LIVE_SCAN_SECS` and appends :data:`MARK` to those runs' entries in the runs list.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text

from ..live import LiveRun, find_live_runs, read_live_file

if TYPE_CHECKING:
    from textual.app import App

    from .widgets.runs_list import RunsList

__all__ = ["LIVE_SCAN_SECS", "MARK", "LiveMarker", "mark_runs"]

#: Seconds between two scans for live runs.
LIVE_SCAN_SECS = 2.0
#: Appended to a live run's entry in the runs list.
MARK = "  ⏯ live"


def mark_runs(runs_list: RunsList, live: set[Path]) -> None:
    """Add (or remove) :data:`MARK` on the entries of ``runs_list`` (ids are run paths)."""
    for i in range(runs_list.option_count):
        option = runs_list.get_option_at_index(i)
        if option.id is None or not isinstance(option.prompt, Text):
            continue
        prompt = option.prompt
        marked = prompt.plain.endswith(MARK)
        want = Path(option.id).resolve() in live
        if want and not marked:
            new = prompt.copy()
            new.append(MARK, style="bold cyan")
            runs_list.replace_option_prompt_at_index(i, new)
        elif marked and not want:
            runs_list.replace_option_prompt_at_index(i, prompt[: len(prompt) - len(MARK)])


class LiveMarker:
    """Keeps :attr:`live` (the live runs under ``root``) current and marks them.

    Args:
        app: The running app; its screen stack is searched for a runs list.
        root: The log directory (or run directory) the app shows.
    """

    def __init__(self, app: App[None], root: Path) -> None:
        self.app = app
        self.root = root
        self.live: list[LiveRun] = []
        self._busy = False

    def start(self) -> None:
        """Scan now and every :data:`LIVE_SCAN_SECS`."""
        self.scan()
        self.app.set_interval(LIVE_SCAN_SECS, self.scan)

    def scan(self) -> None:
        """Start a scan in a worker unless one is running."""
        if not self._busy:
            self._busy = True
            self.app.run_worker(self._scan, thread=True, group="live-scan")

    def find(self, path: Path) -> LiveRun | None:
        """The live endpoint of run ``path`` (reads its ``live.json``; cheap)."""
        return read_live_file(path)

    def _scan(self) -> None:
        try:
            found = find_live_runs(self.root) if self.root.is_dir() else []
        except OSError:
            found = []
        try:
            self.app.call_from_thread(self._done, found)
        except Exception:
            if self.app.is_running:
                raise

    def _done(self, found: list[LiveRun]) -> None:
        from .widgets.runs_list import RunsList

        self._busy = False
        self.live = found
        paths = {r.run_dir.resolve() for r in found}
        for screen in self.app.screen_stack:
            for runs_list in screen.query(RunsList):
                mark_runs(runs_list, paths)
