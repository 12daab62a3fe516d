"""Offline stepping: walk a flight-recorder snapshot module by module, as if paused live.

The same view as the live debugger: ``s`` goes to the next module call of the snapshot's forward
pass (``S`` back), ``n`` to the same module in the next snapshot (the next step captured), and
the module's inputs and outputs go to the tensor inspector. Files are read in a worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy.typing as npt
from textual.binding import Binding, BindingType

from ...events import SnapshotRef
from ...runs.snapshots import load_snapshot
from ...ui.safe import safe
from ..snapshot_steps import ROOT, SnapPoint, snapshot_points
from ..widgets.live_status import LiveStatus, chain_of
from .step_view import StepScreen

__all__ = ["SNAPSHOT_KEYS", "SnapshotScreen"]

SNAPSHOT_KEYS: tuple[tuple[str, str], ...] = (
    ("s / S", "next / previous module call of the snapshot's forward pass"),
    ("n / N", "the same module in the next / previous snapshot (another step)"),
    ("↑ / ↓", "tensors of the module: inputs and outputs"),
    ("Tab", "move focus (tensor list, inspector index)"),
    ("Escape", "back to the run"),
    ("?", "this help"),
)


class SnapshotScreen(StepScreen):
    """Step through the snapshots of a run.

    Args:
        run_dir: The run directory.
        refs: Its snapshots (``SnapshotRef`` events), in step order.
        module_types: Module name to class name (from the run's model structure).
        structure: Module names in structure order (the fallback forward order).
        start: Index into ``refs`` of the snapshot to open first.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "move(1)", "Step"),
        Binding("S", "move(-1)", "Step back", show=False),
        Binding("n", "other_snapshot(1)", "Next snapshot"),
        Binding("N", "other_snapshot(-1)", "Previous snapshot", show=False),
    ]
    HELP_TITLE = "Snapshot stepping — keys"
    HELP_KEYS = SNAPSHOT_KEYS

    def __init__(
        self,
        run_dir: Path,
        refs: Sequence[SnapshotRef],
        *,
        module_types: Mapping[str, str] | None = None,
        structure: Sequence[str] = (),
        start: int = 0,
    ) -> None:
        super().__init__()
        if not refs:
            raise ValueError("no snapshots to step through")
        self.run_dir = run_dir
        self.refs = list(refs)
        self.module_types = dict(module_types or {})
        self.structure = list(structure)
        self.snap = max(0, min(start, len(self.refs) - 1))
        self.point = 0
        self.loaded: list[dict[str, npt.NDArray[Any]] | None] = [None] * len(self.refs)
        self.points: list[list[SnapPoint]] = [[] for _ in self.refs]

    def on_mount(self) -> None:
        """Read the snapshot files in a worker."""
        self.sub_title = safe(f"snapshots · {self.run_dir.name}")
        self.query_one(LiveStatus).show(state="offline", position=None, reason="loading…")
        self.clear_tensors("loading the snapshot…")
        self.run_worker(self._load, thread=True, group="snapshot-load")

    def _load(self) -> None:
        errors = []
        for i, ref in enumerate(self.refs):
            try:
                tensors = load_snapshot(self.run_dir / ref.path)
            except Exception as exc:  # a missing or corrupt file is a message, not a crash
                errors.append(f"Cannot read snapshot {ref.path}: {type(exc).__name__}: {exc}")
                tensors = {}
            points = snapshot_points(list(tensors), captured=ref.tensors, structure=self.structure)
            try:
                self.app.call_from_thread(self._loaded_one, i, tensors, points, errors[-1:])
            except Exception:
                if self.is_attached and self.app.is_running:
                    raise
                return

    def _loaded_one(
        self, i: int, tensors: dict[str, npt.NDArray[Any]], points: list[SnapPoint], err: list[str]
    ) -> None:
        self.loaded[i], self.points[i] = tensors, points
        if err:
            self.message(err[0], severity="error")
        if i == self.snap:
            self.show_point()

    # -- position ------------------------------------------------------------------------

    @property
    def current(self) -> SnapPoint | None:
        """The module call shown (None while loading or for an empty snapshot)."""
        points = self.points[self.snap]
        return points[self.point] if 0 <= self.point < len(points) else None

    def show_point(self) -> None:
        """Render the status lines and the tensor list of the current point."""
        ref = self.refs[self.snap]
        point = self.current
        total = len(self.points[self.snap])
        where = f"snapshot {self.snap + 1}/{len(self.refs)} ({ref.path})"
        if point is None:
            loaded = self.loaded[self.snap] is not None
            self.query_one(LiveStatus).show(
                state="offline",
                position=None,
                reason=f"{where}: {'no module tensors' if loaded else 'loading…'}",
            )
            self.clear_tensors("no tensors in this snapshot" if loaded else "loading…")
            return
        position = {
            "step": ref.step,
            "phase": "forward",
            "module": point.module,
            "module_type": self.module_types.get(point.module, ""),
            "call": point.call,
            "chain": list(chain_of(point.module)),
            "index": self.point,
        }
        reason = f"{ref.reason or 'snapshot'} · module {self.point + 1}/{total} · {where}"
        self.query_one(LiveStatus).show(state="offline", position=position, reason=reason)
        names = list(point.tensors)
        self.set_tensor_names(names, prefer=(self.shown_tensor, "output0", "output"))

    def load_tensor(self, name: str) -> None:
        """Show one of the current module's tensors (already in memory)."""
        point, tensors = self.current, self.loaded[self.snap]
        if point is None or tensors is None or name not in point.tensors:
            return
        ref = self.refs[self.snap]
        label = point.module or ROOT
        self.show_tensor(name, tensors[point.tensors[name]], title=f"step {ref.step} · {label}")

    def action_move(self, delta: int) -> None:
        """Go to the next (or previous) module call."""
        total = len(self.points[self.snap])
        target = self.point + delta
        if not 0 <= target < total:
            edge = "last" if delta > 0 else "first"
            self.notify(
                f"That was the {edge} module of this snapshot (n/N: other snapshots).", markup=False
            )
            return
        self.point = target
        self.show_point()

    def action_other_snapshot(self, delta: int) -> None:
        """Go to the same module in the next (or previous) snapshot."""
        target = self.snap + delta
        if not 0 <= target < len(self.refs):
            self.notify("No more snapshots in that direction.", markup=False)
            return
        here = self.current
        self.snap = target
        points = self.points[target]
        same = [
            i
            for i, p in enumerate(points)
            if here and (p.module, p.call) == (here.module, here.call)
        ]
        self.point = same[0] if same else 0
        self.show_point()
