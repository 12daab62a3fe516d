"""The app's live-debugger actions on the run screen: attach, and step through snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..live import LiveError, LiveRun, find_live_runs, read_live_file
from ..runs.layout import default_root
from ..ui.safe import safe
from .widgets.runs_list import RunsList

if TYPE_CHECKING:
    from .app import VizdebugApp

__all__ = ["attach_selected", "live_runs_to_attach", "selected_run", "step_snapshots"]


def live_runs_to_attach(run: str, root: str | None) -> tuple[str, list[LiveRun]]:
    """What ``vizdebug tui [ROOT] --attach [RUN]`` opens: the app's path and the live runs.

    Args:
        run: The run directory given to ``--attach`` ("" for none).
        root: The log directory given (None: ``$VIZDEBUG_LOGDIR`` or ``./runs``).

    Raises:
        LiveError: RUN is not live, or no run under the root is.
    """
    if run:
        live = read_live_file(Path(run))
        if live is None:
            raise LiveError(
                f"{run} has no live training process (no live.json, or its process exited); "
                "train with vizdebug.watch(...) (live=True is the default) and try again"
            )
        return run, [live]
    base = Path(root) if root is not None else default_root()
    found = find_live_runs(base) if base.is_dir() else []
    if not found:
        raise LiveError(
            f"no live runs under {base}; start training with vizdebug.watch(...) or pass the "
            "log directory (vizdebug tui LOGDIR --attach)"
        )
    return str(base), found


def selected_run(app: VizdebugApp) -> Path | None:
    """The run highlighted in the runs list, else the open run."""
    screen = app.run_screen
    runs = screen.query_one(RunsList)
    entries = runs.entries
    if runs.highlighted is not None and 0 <= runs.highlighted < len(entries):
        return entries[runs.highlighted].path
    return screen.store.path if screen.store is not None else None


def attach_selected(app: VizdebugApp) -> None:
    """Open the live debugger on the selected run, or say why not."""
    path = selected_run(app)
    live = read_live_file(path) if path is not None else None
    if live is None:
        others = [r.run_dir.name for r in app.live_marker.live]
        hint = f" Live runs: {', '.join(others)}." if others else " No run here is live."
        name = path.name if path is not None else "This run"
        app.notify(
            safe(f"{name} has no live training process to attach to.{hint}"),
            severity="warning",
            markup=False,
        )
        return
    app.open_live(live)


def step_snapshots(app: VizdebugApp) -> None:
    """Open the offline stepper on the open run's snapshots (at the cursor step's if any)."""
    from .screens.snapshot_screen import SnapshotScreen

    screen = app.run_screen
    store = screen.store
    if store is None:
        return
    with store.lock:
        refs = sorted(store.snapshots, key=lambda r: r.step)
        modules = store.structures[-1].modules if store.structures else ()
    if not refs:
        app.notify(
            "This run has no tensor snapshots to step through.", severity="warning", markup=False
        )
        return
    step = screen.step
    start = next((i for i, r in enumerate(refs) if step is not None and r.step >= step), 0)
    app.push_screen(
        SnapshotScreen(
            store.path,
            refs,
            module_types={m.name: m.type for m in modules},
            structure=[m.name for m in modules],
            start=start,
        )
    )
