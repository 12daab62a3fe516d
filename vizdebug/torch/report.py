"""What the watch does with a finding: the anomaly event, the snapshot, the warning, the pause.

Each origin (module, role, phase) is reported once: a NaN that got into the weights shows up
again every step, so repeats are counted and the first repeat is noted in the run. The flight
recorder's tensors of the step being checked go into a snapshot (up to ``max_snapshots`` per
watch); with ``on_anomaly="pause"`` the live debugger halts there.
"""

from __future__ import annotations

import logging
import warnings

from ..writer import Writer
from .live import TorchLive
from .recorder import FlightRecorder
from .sentinel import Finding, NonFiniteWarning

__all__ = ["Reporter"]

log = logging.getLogger("vizdebug")


class Reporter:
    """Reports the sentinel's findings of one watch.

    Args:
        writer: Where anomalies, snapshots and notes go.
        recorder: The flight recorder (holds the step being checked).
        live: The live debugger, if served (for ``on_anomaly="pause"``).
        on_anomaly: ``"warn"``, ``"raise"``, ``"log"`` or ``"pause"``.
        max_snapshots: Anomaly snapshots per watch.
    """

    def __init__(
        self,
        writer: Writer,
        recorder: FlightRecorder,
        live: TorchLive | None,
        on_anomaly: str | None,
        max_snapshots: int,
    ) -> None:
        self.writer, self.recorder, self.live = writer, recorder, live
        self.on_anomaly, self.max_snapshots = on_anomaly, max_snapshots
        self.snapshots = 0
        self._reported: set[tuple[str, str, str]] = set()
        self._repeats = 0
        self._pause_noted = False
        #: Steps with a finding, repeats included (read by the loss check).
        self.flagged_steps: set[int] = set()

    def report(self, f: Finding, step: int) -> None:
        """Report a finding made while checking ``step`` (the recorder's step)."""
        s = f.site
        self.flagged_steps.add(step)
        self.flagged_steps.add(f.step)
        key = (s.module, f.role, s.phase)
        if key in self._reported:
            self._repeats += 1
            if self._repeats == 1:
                self.writer.note(
                    "vizdebug/sentinel",
                    f"step {f.step}: the non-finite values found at {s.module or '(root)'} "
                    f"({f.role}, {s.phase}) persist; repeats of a finding already reported are "
                    "counted, not reported again",
                    step=f.step,
                )
            return
        self._reported.add(key)
        self.writer.anomaly(
            f.kind, step=f.step, module=s.module, module_type=s.module_type, phase=s.phase,
            role=f.role, message=f.message, nan=f.nan, posinf=f.posinf, neginf=f.neginf,
        )  # fmt: skip
        if self.recorder.enabled and self.snapshots < self.max_snapshots:
            self.snapshots += 1
            tensors, modified = self.recorder.capture()
            # The recorder holds the step being checked (an optimizer finding may be older).
            self.writer.snapshot(tensors, step, reason="anomaly")
            if modified:
                text = "modified in place after their module returned: " + ", ".join(modified)
                self.writer.note("vizdebug/flight-recorder", text, step=step)
        if self.on_anomaly in ("warn", "pause"):
            warnings.warn(f.message, NonFiniteWarning, stacklevel=5)
        else:
            log.warning("vizdebug: %s", f.message)
        if self.on_anomaly == "pause":
            self._pause(f)

    def _pause(self, f: Finding) -> None:
        s = f.site
        if self.live is not None:
            recorder = self.recorder
            self.live.halt(
                f.step, s.phase, s.module, s.module_type, f.message,
                lambda: recorder.capture()[0],
            )  # fmt: skip
        elif not self._pause_noted:
            self._pause_noted = True
            log.warning("vizdebug: on_anomaly='pause' needs live=True; acting as 'warn'")
