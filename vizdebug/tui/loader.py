"""Reading runs off the UI thread: discovery of runs, and the tail of the open run.

Every file access happens in Textual thread workers; results reach the screen through
``App.call_from_thread``. Nothing raised while reading reaches the user as a traceback: it
becomes a message in the app.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..runs.layout import read_info
from ..runs.reader import find_runs
from ..runs.summary import summarize
from .data import Delta, RunStore
from .widgets.message_bar import MessageBar
from .widgets.runs_list import RunEntry

if TYPE_CHECKING:
    from .screens.run_screen import RunScreen

__all__ = ["LIVE_CHECK_SECS", "RUNS_REFRESH_SECS", "Loader", "pick_run"]

#: How often the open run's "live" status (its writer process still running) is re-checked.
LIVE_CHECK_SECS = 2.0
#: How often the runs list looks for new runs and re-reads the facts of live ones.
RUNS_REFRESH_SECS = 3.0


def pick_run(runs: list[Path]) -> Path:
    """The run to open first: the most recently modified one."""

    def mtime(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0

    return max(runs, key=lambda p: (mtime(p), str(p)))


def _label(root: Path, path: Path) -> str:
    try:
        rel = path.relative_to(root)
    except ValueError:
        return path.name
    return str(rel) if str(rel) != "." else path.name


def _newest(path: Path) -> float:
    """Newest modification time of a run directory's own files (0.0 if unreadable)."""
    try:
        return max((p.stat().st_mtime for p in path.iterdir() if p.is_file()), default=0.0)
    except OSError:
        return 0.0


def _is_live(path: Path) -> bool:
    # summarize() reads other tools' runs in full; only vizdebug runs (run.json) can be live.
    return bool(read_info(path)) and summarize(path).live


class Loader:
    """Starts the workers of a :class:`~vizdebug.tui.screens.RunScreen`."""

    def __init__(self, screen: RunScreen) -> None:
        self.screen = screen
        self._busy = False
        self._live_checked = 0.0
        #: The last summary of each run and the newest file time it saw: only runs whose
        #: files changed since are summarized again.
        self._entries: dict[Path, tuple[RunEntry, float]] = {}

    def _call(self, func: Any, *args: Any, **kwargs: Any) -> None:
        try:
            self.screen.app.call_from_thread(func, *args, **kwargs)
        except Exception:
            # Results that arrive while the app shuts down (or the screen goes) are dropped.
            if self.screen.is_attached and self.screen.app.is_running:
                raise

    # -- runs ----------------------------------------------------------------------------

    def discover(self, *, again: bool = True) -> None:
        """Find the runs under the screen's root in a worker and open one if none is open.

        Args:
            again: Summarize every run again (``r``); else only new and live ones (the
                periodic refresh that keeps a growing run's counts current without ``r``).
        """
        if again:
            self._entries.clear()
        self.screen.run_worker(self._discover, thread=True, group="discover", exclusive=True)

    def _discover(self) -> None:
        root = self.screen.root
        try:
            runs = find_runs(root) if root.is_dir() else []
        except Exception as exc:  # never a traceback in the app
            self._call(self._message, f"Cannot list runs under {root}: {exc}", "error")
            return
        if not runs:
            self._call(
                self._message,
                f"No runs under {root}. Pass a log directory or a run directory (vizdebug tui "
                "PATH), or start one: vizdebug demo, or vizdebug.Writer() in your script.",
                "error",
            )
            return
        if self.screen.store is None:
            self._call(self.screen.open_run, pick_run(runs))
        known = dict(self._entries)
        entries = [known[p][0] if p in known else RunEntry(p, _label(root, p)) for p in runs]
        if any(p not in known for p in runs):
            self._call(self.screen.set_runs, entries)
        summarized: dict[Path, tuple[RunEntry, float]] = {}
        for entry in entries:
            newest = _newest(entry.path)
            old = known.get(entry.path)
            if old is not None and old[1] == newest and not old[0].live:
                summarized[entry.path] = old  # nothing changed on disk
                continue
            try:
                s = summarize(entry.path)
                warning = "; ".join(s.problems[:1])
                found = RunEntry(entry.path, entry.label, s.live, s.steps, s.anomalies, warning)
            except Exception:  # an unreadable run keeps its plain entry
                found = entry
            summarized[entry.path] = (found, newest)
        self._entries = summarized
        self._call(self.screen.set_runs, [e for e, _ in summarized.values()])

    def _message(self, text: str, severity: str) -> None:
        self.screen.query_one(MessageBar).show_message(text, severity=severity)
        self.screen.loaded = True

    # -- the open run --------------------------------------------------------------------

    def tick(self) -> None:
        """Timer callback: start a poll unless one is running."""
        if self.screen.store is not None and not self._busy:
            self.poll_now()

    def poll_now(self) -> None:
        """Read what the open run's files gained, in a worker."""
        store = self.screen.store
        if store is None or self._busy:
            return
        self._busy = True
        self.screen.run_worker(lambda: self._poll(store), thread=True, group="poll")

    def _poll(self, store: RunStore) -> None:
        first = store.polls == 0
        delta = Delta()
        error = ""
        live: bool | None = None
        cut: list[tuple[str, int, int]] | None = None
        try:
            delta = store.poll()
            now = time.monotonic()
            if first or now - self._live_checked > LIVE_CHECK_SECS:
                self._live_checked = now
                live = _is_live(store.path)
                # an incomplete last record is a writer mid-write while the run is live,
                # else a file cut short: checked with the live status
                cut = [] if live else store.unread_tails()
        except Exception as exc:  # never a traceback in the app
            error = f"Cannot read {store.path.name}: {type(exc).__name__}: {exc}"
        self._call(self._done, store, delta, first, live, error, cut)

    def _done(
        self,
        store: RunStore,
        delta: Delta,
        first: bool,
        live: bool | None,
        err: str,
        cut: list[tuple[str, int, int]] | None = None,
    ) -> None:
        self._busy = False
        changed = live is not None and live != self.screen.live and store is self.screen.store
        if changed:
            self.screen.live = bool(live)
        if err:
            self._message(err, "error")
        if first or not delta.empty or changed:
            self.screen.apply(store, delta, first=first)
        if cut is not None and store is self.screen.store:
            self.screen.set_cut_files(cut)
