"""Turns the store's contents into widget updates for a :class:`RunScreen`.

Only the visible tab is refreshed on a step move or a live update, which keeps a key press
cheap however large the run is; a tab is filled when it becomes visible.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from textual.timer import Timer
from textual.widgets import Static

from ...runs.snapshots import load_snapshot
from ...ui.safe import safe
from ..data import Delta, RunStore
from ..health import stat
from ..widgets import (
    AnomalyTable,
    HealthTable,
    HistogramView,
    MessageBar,
    ModuleTree,
    ScalarView,
    SeriesView,
    StepBar,
    TensorInspector,
)
from ..widgets.anomaly_table import describe
from ..widgets.filter_bar import matches
from ..widgets.health_table import health_rows
from ..widgets.module_tree import tree_order
from ..widgets.scalar_view import HIST_PREFIX

if TYPE_CHECKING:
    from .run_screen import RunScreen

__all__ = ["HEALTH_DEBOUNCE_SECS", "HEALTH_LIVE_SECS", "ViewUpdater", "module_order"]

#: Delay before the health table follows a step key (repeated keys rebuild it once).
HEALTH_DEBOUNCE_SECS = 0.03
#: Least time between two rebuilds of the health table while a live run grows.
HEALTH_LIVE_SECS = 0.5


def module_order(store: RunStore) -> list[str]:
    """Recorded names in module-tree order (structure order, then first seen)."""
    with store.lock:
        modules = store.structures[-1].modules if store.structures else ()
        names = list(store.names)
    recorded = set(names)
    return [n for n in tree_order(modules, names) if n in recorded]


def _problem_text(store: RunStore) -> str:
    problems = store.problems
    first = problems[0]
    return (
        f"{len(problems)} unreadable record(s) in {store.name}; the rest of the run is shown. "
        f"First: {Path(first.path).name}, byte {first.offset}: {first.message}"
    )


class ViewUpdater:
    """Fills a screen's widgets from its :class:`~vizdebug.tui.data.RunStore`."""

    def __init__(self, screen: RunScreen) -> None:
        self.screen = screen
        self._inspected: tuple[Path, int] | None = None
        self._health_timer: Timer | None = None
        self._health_built = 0.0

    def reset(self) -> None:
        """Clear every view (another run was opened)."""
        s = self.screen
        s.query_one(ModuleTree).set_modules((), ())
        s.query_one(HealthTable).show_rows([], step=None)
        s.query_one("#series-hist", HistogramView).set_message("select a module")
        s.query_one(TensorInspector).set_message("loading…")
        s.query_one(ScalarView).set_tags([], [])
        self._inspected = None
        self._cancel_health()  # a rebuild due for the run that was left
        self._step_bar()

    def apply(self, store: RunStore, delta: Delta, *, first: bool) -> None:
        """Show what a poll added."""
        s = self.screen
        if store.problems and (delta.problems or first):
            s.query_one(MessageBar).show_message(_problem_text(store), severity="warning")
        elif first and store.events == 0:
            s.query_one(MessageBar).show_message(
                f"{store.name} holds no events yet; waiting for its writer.", severity="warning"
            )
        elif first is False and delta.items and s.query_one(MessageBar).text.endswith("writer."):
            s.query_one(MessageBar).clear_message()
        table = s.query_one(AnomalyTable)
        with store.lock:
            new = store.anomalies[len(table.anomalies) :]
            hist_tags = list(store.histograms)
            scalar_tags = list(store.scalars)
            modules = store.structures[-1].modules if store.structures else ()
            names = list(store.names)
        if new:
            table.add_anomalies(new)
            shown = table.current
            if shown is not None:  # the whole message, wrapped, under the table
                s.query_one("#anomaly-detail", Static).update(describe(shown))
        if first or delta.new_names or delta.structures:
            s.query_one(ModuleTree).set_modules(modules, names)
        if first or delta.scalars:
            s.query_one(ScalarView).set_tags(scalar_tags, hist_tags)
        if not s.module and names:
            s.select_module(module_order(store)[0] if names else "")
        if s.follow and store.steps:
            s.step_index = len(store.steps) - 1
        # The first read is shown at once, not after the health table's debounce: the screen
        # says it is loaded right after this, and whatever acts on that (a key, a screen
        # pushed on top, a screenshot) must find the table complete, not filling in later.
        self.refresh(live=not first, now=first)

    # -- refresh -------------------------------------------------------------------------

    def refresh(
        self, *, module_changed: bool = False, live: bool = False, now: bool = False
    ) -> None:
        """Update the step bar and the visible tab.

        Args:
            module_changed: Only the selected module or role changed (the health table
                does not show it).
            live: Because the run grew (the health table is rebuilt at most every
                :data:`HEALTH_LIVE_SECS`).
            now: Rebuild the health table before returning, without the debounce.
        """
        self._step_bar()
        store = self.screen.store
        if store is None:
            return
        tab = self.screen.active_tab
        if tab == "health" and now:
            self._cancel_health()
            self._health_now()
        elif tab == "health" and not module_changed:
            # Re-rendering a few hundred table rows costs tens of milliseconds: coalesce key
            # repeats, and rebuild at most every HEALTH_LIVE_SECS while a run grows.
            if live and self._health_timer is not None:
                return  # a rebuild is already due
            since = time.monotonic() - self._health_built
            delay = HEALTH_DEBOUNCE_SECS
            if live:
                delay = max(delay, HEALTH_LIVE_SECS - since)
            self._schedule_health(delay)
        elif tab == "series":
            self._series(store)
        elif tab == "inspector":
            self._inspector(store)
        elif tab == "scalars":
            self._scalars(store)

    def _schedule_health(self, delay: float) -> None:
        self._cancel_health()
        self._health_timer = self.screen.set_timer(delay, self._health_now)

    def _cancel_health(self) -> None:
        if self._health_timer is not None:
            self._health_timer.stop()
            self._health_timer = None

    def _health_now(self) -> None:
        self._health_timer = None
        store = self.screen.store
        if store is None or self.screen.active_tab != "health":
            return
        self._health_built = time.monotonic()
        step = self.screen.step
        names = [n for n in module_order(store) if matches(n, self.screen.filter)]
        rows = health_rows(store, names, step)
        self.screen.query_one(HealthTable).show_rows(rows, step=step)

    def _step_bar(self) -> None:
        s = self.screen
        store, step = s.store, s.step
        s.query_one(StepBar).show(
            step=step,
            steps=store.step_count if store else 0,
            recorded=store.recorded if store else 0,
            module=s.module,
            role=s.role,
            live=s.live,
            # runs without statistics (other tools') step through their scalars
            has_stats=store is None or step is None or not store.recorded or store.has_stats(step),
        )

    def _series(self, store: RunStore) -> None:
        s = self.screen
        view = s.query_one(SeriesView)
        hist = s.query_one("#series-hist", HistogramView)
        if not s.module or not s.role:
            view.show(
                "select a module in the tree or the health table", np.zeros(0, np.int64), {}, {}
            )
            hist.set_message("")
            return
        name, role = s.module, s.role
        series: dict[str, npt.NDArray[np.float64]] = {}
        nonfinite = np.asarray(
            sum(store.series(name, role, c).values for c in ("nan", "posinf", "neginf")),
            dtype=np.float64,
        )
        numel_series = store.series(name, role, "numel")
        numel = numel_series.values
        # Steps where no value was finite have no mean/std/min/max/l2: NaN here, not 0.
        none_finite = numel - nonfinite <= 0
        for col in ("mean", "std", "min", "max", "l2"):
            series[col] = np.where(none_finite, np.nan, store.series(name, role, col).values)
        series["nonfinite"] = nonfinite
        with np.errstate(invalid="ignore", divide="ignore"):
            series["zero%"] = store.series(name, role, "zeros").values / numel * 100
        at = store.at(name, role, s.step)
        cursor: dict[str, float | None] = {}
        if at is not None:
            for col in ("mean", "std", "min", "max", "l2"):
                cursor[col] = stat(at, col)
            cursor["nonfinite"] = at.get("nan") + at.get("posinf") + at.get("neginf")
            n = at.get("numel")
            cursor["zero%"] = at.get("zeros") / n * 100 if n else float("nan")
        count = len(series["mean"])
        view.show(
            f"{name} · {role} · {count} recorded steps",
            numel_series.steps,
            series,
            cursor,
            cursor=s.step,
        )
        if at is None:
            hist.set_message(f"no {role} statistics of {name} at or before this step")
        else:
            hist.set_histogram(
                at.hist,
                at.get("hist_lo"),
                at.get("hist_hi"),
                title=f"{name} {role} at step {at.step}  shape {list(at.shape)} {at.dtype}",
            )

    def _scalars(self, store: RunStore) -> None:
        view = self.screen.query_one(ScalarView)
        tag = view.current
        step = self.screen.step if self.screen.step is not None else 0
        with store.lock:
            if tag.startswith(HIST_PREFIX):
                hists = list(store.histograms.get(tag[len(HIST_PREFIX) :], ()))
                scalar: tuple[list[int], list[float]] | None = None
            else:
                hists = []
                found = store.scalars.get(tag)
                scalar = (list(found[0]), list(found[1])) if found else None
        if hists:
            view.show_histograms(tag[len(HIST_PREFIX) :], hists, step)
        elif scalar is not None:
            view.show_scalar(tag, scalar[0], scalar[1], step)
        elif not view.tags:
            view.show_none("no tags match the filter" if self.screen.filter else "no scalars")

    # -- the inspector -------------------------------------------------------------------

    def _inspector(self, store: RunStore) -> None:
        step = self.screen.step
        inspector = self.screen.query_one(TensorInspector)
        if step is None:
            inspector.set_message("no steps recorded yet")
            return
        refs = store.snapshots_at(step)
        if not refs:
            self._inspected = None
            with store.lock:
                steps = sorted({r.step for r in store.snapshots})
            where = ", ".join(map(str, steps[:20])) + (" …" if len(steps) > 20 else "")
            inspector.set_message(
                f"No tensor snapshot at step {step}. "
                + (
                    f"Snapshots at steps: {where} (press s to go to the next)."
                    if steps
                    else "This run has no snapshots."
                )
            )
            return
        key = (store.path, step)
        if key == self._inspected:
            return
        self._inspected = key
        inspector.set_message(f"loading the snapshot of step {step}…")
        paths = [store.path / r.path for r in refs]
        self.screen.run_worker(
            lambda: self._load(paths, step, key), thread=True, group="inspect", exclusive=True
        )

    def _load(self, paths: list[Path], step: int, key: tuple[Path, int]) -> None:
        tensors: dict[str, Any] = {}
        error = ""
        for path in paths:
            try:
                loaded = load_snapshot(path)
            except Exception as exc:  # a missing or corrupt file is a message, not a crash
                error = f"Cannot read snapshot {path.name}: {type(exc).__name__}: {exc}"
                continue
            prefix = f"{path.stem}/" if len(paths) > 1 else ""
            tensors.update({prefix + k: v for k, v in loaded.items()})
        try:
            self.screen.app.call_from_thread(self._loaded, tensors, step, key, error)
        except Exception:
            # Results that arrive while the app shuts down (or the screen goes) are dropped.
            if self.screen.is_attached and self.screen.app.is_running:
                raise

    def _loaded(self, tensors: dict[str, Any], step: int, key: tuple[Path, int], err: str) -> None:
        if key != self._inspected:
            return
        inspector = self.screen.query_one(TensorInspector)
        if tensors:
            inspector.set_tensors(tensors, title=f"Snapshot of step {step}")
            if err:
                self.screen.notify(safe(err), severity="error", markup=False)
        else:
            inspector.set_message(err or f"The snapshot of step {step} holds no tensors.")
