"""The main screen: runs, module tree, and the tabs (health, series, anomalies, inspector, scalars).

File reading happens in thread workers (:mod:`vizdebug.tui.loader`); this screen only turns the
store's contents into widget updates, refreshing just the visible tab.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static, TabbedContent, TabPane

from ...ui.safe import safe
from ..data import Delta, RunStore, is_run_dir
from ..loader import RUNS_REFRESH_SECS, Loader
from ..widgets import (
    AnomalyTable,
    FilterBar,
    HealthTable,
    HistogramView,
    MessageBar,
    ModuleTree,
    RunsList,
    ScalarView,
    SeriesView,
    StepBar,
    TensorInspector,
)
from ..widgets.anomaly_table import describe
from ..widgets.runs_list import RunEntry
from .runs_panel import CutFile, cut_message, with_open_run
from .views import ViewUpdater

__all__ = ["TABS", "RunScreen"]

TABS = ("health", "series", "anomalies", "inspector", "scalars")
_STEP_ACTIONS = ("step", "step_to")


class RunScreen(Screen[None]):
    """Browse and tail the runs under a path.

    Args:
        root: A log directory or a run directory.
        poll_interval: Seconds between checks for appended events.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "step(-1)", "Step ←", priority=True),
        Binding("right", "step(1)", "Step →", priority=True),
        Binding("home", "step_to('first')", "First", show=False, priority=True),
        Binding("end", "step_to('last')", "Last", show=False, priority=True),
        Binding("1", "tab('health')", "Health", show=False),
        Binding("2", "tab('series')", "Series", show=False),
        Binding("3", "tab('anomalies')", "Anomalies", show=False),
        Binding("4", "tab('inspector')", "Inspector", show=False),
        Binding("5", "tab('scalars')", "Scalars", show=False),
        Binding("t", "cycle_role", "Role"),
        Binding("s", "next_snapshot", "Snapshot"),
        Binding("a", "next_anomaly", "Anomaly"),
        Binding("r", "rescan", "Rescan", show=False),
        Binding("slash", "filter", "Filter"),
    ]

    def __init__(self, root: Path, *, poll_interval: float = 0.1) -> None:
        super().__init__()
        self.root = root
        self.poll_interval = poll_interval
        self.store: RunStore | None = None
        #: Index into ``store.steps`` of the step cursor.
        self.step_index = 0
        #: Whether the cursor sticks to the last step while a run grows.
        self.follow = True
        self.module = ""
        self.role = ""
        self.live = False
        #: The ``/`` filter: module and tag names must contain it (case-insensitive).
        self.filter = ""
        self._run_entries: list[RunEntry] = []
        #: Event files of the open run that end in an incomplete record while nothing writes it.
        self.cut_files: list[CutFile] = []
        #: Set once the current run's first read is on screen.
        self.loaded = False
        self.loader = Loader(self)
        self.views = ViewUpdater(self)

    def compose(self) -> ComposeResult:
        """Header, step bar, messages, left column (runs, modules), tabs, footer."""
        yield Header()
        yield StepBar(id="step-bar")
        yield MessageBar(id="messages")
        yield FilterBar(id="filter")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield RunsList(id="runs")
                yield ModuleTree(id="modules")
            with TabbedContent(id="tabs", initial="health"):
                with TabPane("Health", id="health"):
                    yield HealthTable(id="health-table")
                with TabPane("Series", id="series"):
                    yield SeriesView(id="series-view")
                    yield HistogramView(id="series-hist")
                with TabPane("Anomalies", id="anomalies"):
                    yield AnomalyTable(id="anomaly-table")
                    # not focusable: focus moving there would switch back to this tab
                    with VerticalScroll(id="anomaly-detail-box", can_focus=False):
                        yield Static("", id="anomaly-detail")
                with TabPane("Inspector", id="inspector"):
                    yield TensorInspector(id="tensor-inspector")
                with TabPane("Scalars", id="scalars"):
                    yield ScalarView(id="scalar-view")
        yield Footer()

    def on_mount(self) -> None:
        """Find the runs and start tailing (a run directory opens at once)."""
        if is_run_dir(self.root):
            self.open_run(self.root)
        self.loader.discover()
        self.set_interval(self.poll_interval, self.loader.tick)
        self.set_interval(RUNS_REFRESH_SECS, lambda: self.loader.discover(again=False))

    # -- state ---------------------------------------------------------------------------

    @property
    def step(self) -> int | None:
        """The step under the cursor (None before any step is recorded)."""
        if self.store is None or not self.store.steps:
            return None
        return self.store.steps[min(self.step_index, len(self.store.steps) - 1)]

    @property
    def active_tab(self) -> str:
        """Id of the visible tab."""
        return self.query_one("#tabs", TabbedContent).active

    def set_runs(self, entries: list[RunEntry]) -> None:
        """Fill the runs list (from the discovery worker)."""
        self._run_entries = list(entries)
        self.show_runs()

    def show_runs(self) -> None:
        """Show the runs list, the open run's entry with the counts the step bar shows."""
        store = self.store
        entries = self._run_entries
        if store is not None and store.polls:
            entries = with_open_run(entries, store, live=self.live, cut=self.cut_files)
        self.query_one(RunsList).set_runs(entries, current=store.path if store else None)

    def open_run(self, path: Path) -> None:
        """Show another run: reset every view and start reading it."""
        if self.store is not None and self.store.path == path:
            return
        self.store = RunStore(path)
        self.step_index, self.follow, self.module, self.role = 0, True, "", ""
        self.loaded = False
        self.sub_title = safe(path.name)
        self.query_one(MessageBar).clear_message()
        self.cut_files = []
        self.query_one(AnomalyTable).reset()
        self.query_one("#anomaly-detail", Static).update("")
        self.views.reset()
        self.loader.poll_now()

    def apply(self, store: RunStore, delta: Delta, *, first: bool) -> None:
        """Show what a poll added (called on the UI thread)."""
        if store is not self.store:
            return  # a poll of a run the user has left
        self.views.apply(store, delta, first=first)
        self.show_runs()
        self.loaded = True

    def set_cut_files(self, cut: list[CutFile]) -> None:
        """Warn (message bar, runs list) about event files that could not be read whole."""
        if cut == self.cut_files:
            return
        self.cut_files = list(cut)
        if cut:
            self.query_one(MessageBar).show_message(cut_message(cut), severity="warning")
        self.show_runs()

    def select_module(self, name: str) -> None:
        """Make ``name`` the selected module and keep its role if it has one."""
        if name == self.module or self.store is None:
            return
        self.module = name
        roles = self.store.roles_of(name)
        if self.role not in roles:
            self.role = "output" if "output" in roles else (roles[0] if roles else "")
        self.views.refresh(module_changed=True)

    def go_to_step(self, step: int) -> None:
        """Put the cursor on the last recorded step ``<= step``."""
        if self.store is None or not self.store.steps:
            return
        self.step_index = self.store.step_index(step)
        self.follow = self.step_index == len(self.store.steps) - 1
        self.views.refresh()

    # -- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Let arrow keys reach a focused text input instead of moving the step cursor."""
        return not (action in _STEP_ACTIONS and isinstance(self.focused, Input))

    def action_step(self, delta: int) -> None:
        """Move the step cursor by ``delta`` recorded steps."""
        if self.store is None or not self.store.steps:
            return
        last = len(self.store.steps) - 1
        self.step_index = max(0, min(last, self.step_index + delta))
        self.follow = self.step_index == last
        self.views.refresh()

    def action_step_to(self, where: str) -> None:
        """Move the step cursor to the ``"first"`` or ``"last"`` step."""
        if self.store is None or not self.store.steps:
            return
        self.step_index = 0 if where == "first" else len(self.store.steps) - 1
        self.follow = where != "first"
        self.views.refresh()

    def action_tab(self, tab: str) -> None:
        """Show a tab."""
        self.query_one("#tabs", TabbedContent).active = tab

    def action_cycle_role(self) -> None:
        """Show the selected module's next recorded role."""
        if self.store is None or not self.module:
            return
        roles = self.store.roles_of(self.module)
        if roles:
            i = roles.index(self.role) if self.role in roles else -1
            self.role = roles[(i + 1) % len(roles)]
            self.views.refresh(module_changed=True)

    def action_next_snapshot(self) -> None:
        """Show the cursor step's snapshot, else go to the next step with one (wrapping)."""
        if self.store is None:
            return
        steps = sorted({s.step for s in self.store.snapshots})
        if not steps:
            self.notify("This run has no tensor snapshots.", severity="warning")
            return
        current = self.step if self.step is not None else -1
        if current in steps and self.active_tab != "inspector":
            self.action_tab("inspector")  # this step's own snapshot first (the NaN step's)
            return
        later = [s for s in steps if s > current]
        self.go_to_step(later[0] if later else steps[0])
        self.action_tab("inspector")

    def action_next_anomaly(self) -> None:
        """Jump to the next anomaly after the cursor step (wrapping)."""
        if self.store is None or not self.store.anomalies:
            self.notify("No anomalies in this run.")
            return
        current = self.step if self.step is not None else -1
        found = [a for a in self.store.anomalies if a.step > current]
        self.jump_to(found[0] if found else self.store.anomalies[0])

    def action_filter(self) -> None:
        """Open the filter line (``/``)."""
        self.query_one(FilterBar).open()

    def on_input_changed(self, event: FilterBar.Changed) -> None:
        """Narrow the module tree, the health table and the tag list as the filter changes."""
        if not isinstance(event.input, FilterBar):
            return
        event.stop()
        self.filter = event.value
        self.query_one(ModuleTree).set_filter(self.filter)
        self.query_one(ScalarView).set_filter(self.filter)
        self.views.refresh(now=True)

    def on_filter_bar_done(self, event: FilterBar.Done) -> None:
        """Hand focus back to the visible tab."""
        event.stop()
        tabs = self.query_one("#tabs", TabbedContent)
        pane = tabs.get_pane(tabs.active)
        target = next((w for w in pane.query("*") if w.can_focus), None)
        if target is not None:
            target.focus()
        else:
            self.focus_next()

    def action_rescan(self) -> None:
        """Look for runs again."""
        self.loader.discover()

    # -- messages from widgets -------------------------------------------------------------

    def jump_to(self, anomaly: object) -> None:
        """Go to an anomaly's step and module, showing the series tab."""
        step = int(getattr(anomaly, "step", 0))
        module = str(getattr(anomaly, "module", ""))
        if module:
            self.query_one(ModuleTree).select_name(module)
            self.query_one(HealthTable).select_name(module)
            self.module = ""  # force a refresh even when it is already selected
            self.select_module(module)
        self.go_to_step(step)
        self.action_tab("series")

    def on_runs_list_run_chosen(self, event: RunsList.RunChosen) -> None:
        """Open the chosen run."""
        self.open_run(event.path)

    def on_module_tree_highlighted(self, event: ModuleTree.Highlighted) -> None:
        """Select the module under the tree's cursor."""
        self.select_module(event.module)
        self.query_one(HealthTable).select_name(event.module)

    def on_health_table_highlighted(self, event: HealthTable.Highlighted) -> None:
        """Select the module under the table's cursor."""
        self.select_module(event.module)
        self.query_one(ModuleTree).select_name(event.module)

    def on_anomaly_table_highlighted(self, event: AnomalyTable.Highlighted) -> None:
        """Show the whole highlighted anomaly, wrapped, under the table."""
        self.query_one("#anomaly-detail", Static).update(describe(event.anomaly))

    def on_anomaly_table_jump(self, event: AnomalyTable.Jump) -> None:
        """Jump to an anomaly."""
        self.jump_to(event.anomaly)

    def on_scalar_view_chosen(self, event: ScalarView.Chosen) -> None:
        """Show the chosen scalar or histogram tag."""
        # Only the scalars tab shows it (it is filled when it becomes visible). Listing the
        # tags of a run that opens chooses the first one: refreshing another tab then would
        # rebuild a health table that was just built, a moment after the run is loaded.
        if self.active_tab == "scalars":
            self.views.refresh()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """Fill the tab that just became visible."""
        self.views.refresh()
