"""After the training step, on the host: statistics to the writer, the NaN check, the recorder.

:class:`Engine` is shared by :class:`vizdebug.keras.Callback` and :func:`vizdebug.tf.watch`. It
owns the layer probe and the schedule; :meth:`Engine.finish` takes what one step returned
(see :mod:`vizdebug.keras.plan`) and hands the packed values to the writer thread
(``writer.defer``: the copy to numpy happens there), records the loss, and reads the step's one
small flag vector -- the only host read of a step -- to find the first non-finite value.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import tensorflow as tf

from ..adapters import (
    DEFAULT_EVERY,
    DEFAULT_FIRST,
    WHAT,
    NonFiniteError,
    NonFiniteWarning,
    check_schedule,
    globs,
)
from ..stats import HIST_BINS
from ..tf.deferred import Row, stats_items
from ..writer import Writer
from .plan import Plan, Site, WeightRef
from .probe import LayerProbe, layer_slots, structure
from .replay import Layout

__all__ = [
    "DEFAULT_EVERY",
    "DEFAULT_FIRST",
    "WHAT",
    "Engine",
    "Finding",
    "NonFiniteError",
    "NonFiniteWarning",
    "check_options",
    "globs",
]

log = logging.getLogger("vizdebug")

OnAnomaly = Literal["warn", "raise", "stop"] | None
_MODES = ("warn", "raise", "stop", None)


@dataclass(frozen=True, slots=True)
class Finding:
    """The first non-finite value of a step (or the op ``check_numerics`` stopped at)."""

    kind: str
    site: Site
    role: str
    message: str
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    step: int = 0
    op: str = ""


def check_options(
    every: object, first: object, what: Iterable[str] | str | None, on_anomaly: object
) -> frozenset[str]:
    """Validate the schedule options; returns the chosen ``what``.

    Raises:
        ValueError: A bad value.
    """
    chosen = check_schedule(every, first, what)
    if on_anomaly not in _MODES:
        raise ValueError(f"on_anomaly must be one of {_MODES}, got {on_anomaly!r}")
    return chosen


def _masks(a: np.ndarray[Any, Any]) -> tuple[Any, Any, Any]:
    return np.isnan(a), np.isposinf(a), np.isneginf(a)


def _unpack(
    flat: np.ndarray[Any, Any], dims: np.ndarray[Any, Any], ranks: Sequence[int]
) -> list[np.ndarray[Any, Any]]:
    """Split the flight recorder's packed vector back into arrays."""
    out, at, off = [], 0, 0
    for r in ranks:
        shape = tuple(int(d) for d in dims[at : at + r])
        at += r
        size = int(np.prod(shape)) if shape else 1
        out.append(flat[off : off + size].reshape(shape))
        off += size
    return out


class Engine:
    """Probe, schedule, statistics hand-off and NaN check for one Keras model.

    Args:
        model: The model.
        writer: Where events go.
        every, first, what, include, exclude, on_anomaly, flight_recorder, max_snapshots,
            bins, max_stall: As documented on :class:`vizdebug.keras.Callback`.
    """

    def __init__(
        self,
        model: Any,
        writer: Writer,
        *,
        every: int,
        first: int,
        what: frozenset[str],
        include: str | Sequence[str] | None,
        exclude: str | Sequence[str] | None,
        on_anomaly: OnAnomaly,
        flight_recorder: bool,
        max_snapshots: int,
        bins: int = HIST_BINS,
        max_stall: float | None = None,
    ) -> None:
        self.model = model
        self.max_stall = max_stall
        self.writer = writer
        self.every, self.first, self.what = every, first, what
        self.on_anomaly = on_anomaly
        self.sentinel = on_anomaly is not None
        self.flight_recorder = flight_recorder
        self.max_snapshots = max_snapshots
        self.bins = bins
        self._globs = globs(include, "include"), globs(exclude, "exclude")
        self.slots = layer_slots(model, *self._globs)
        self.weights = self._weight_refs()
        self.probe = LayerProbe(self.slots)
        self.step = 0
        self.finding: Finding | None = None
        #: Set by the live debugger: return every layer's inputs and outputs each step.
        self.capture = tf.Variable(False, trainable=False, name="vizdebug_capture")
        #: The layer inputs and outputs of the last step that returned them, by name.
        self.last_io: dict[str, np.ndarray[Any, Any]] = {}
        #: Runs a flagged step again (set by the callback; see :mod:`vizdebug.keras.replay`).
        self.replay: Callable[[int, Layout, np.ndarray[Any, Any]], Finding | None] | None = None
        #: Check every layer on every step (set when a replay did not reproduce a value).
        self.exact = False
        #: ``tf.debugging.enable_check_numerics`` is on for the run (set by the callback).
        self.numerics = False
        self._structure_done = False
        self._snapshots = 0
        self._lost_steps = 0
        self._noted: set[tuple[str, str]] = set()

    def _weight_refs(self) -> list[WeightRef]:
        refs = {id(v): WeightRef(n, s, v) for s in self.slots for n, v in s.weights}
        return [refs[id(v)] for v in self.model.trainable_weights if id(v) in refs]

    def refresh(self) -> None:
        """Re-read layers' weights (after a model is built by its first call)."""
        fresh = {id(s.layer): s for s in layer_slots(self.model, *self._globs)}
        for slot in self.slots:
            slot.weights = fresh[id(slot.layer)].weights if id(slot.layer) in fresh else []
        self.weights = self._weight_refs()

    def scheduled(self, step: int) -> bool:
        """Whether statistics are recorded at ``step`` (an integer compare)."""
        return bool(self.what) and (step < self.first or step % self.every == 0)

    def note(self, text: str, key: str = "") -> None:
        """Write a note once per ``key`` (default: the text)."""
        k = ("note", key or text)
        if k not in self._noted:
            self._noted.add(k)
            self.writer.note("vizdebug/keras", text, step=self.step)

    def finish(self, step: int, plan: Plan, extra: dict[str, Any]) -> Finding | None:
        """Hand one step's results to the writer and check it; returns a finding, if any."""
        writer = self.writer
        if not self._structure_done:
            self._structure_done = True
            writer.structure("keras", structure(self.slots, plan.shapes), step=step)
        for (name, reason), _ in list(self.probe.skipped.items()):
            if (name, reason) not in self._noted:
                self._noted.add((name, reason))
                writer.note("vizdebug/keras", f"{name or '(model)'} output skipped: {reason}", step)
        loss = extra.get("loss")
        if loss is not None:
            writer.scalar("loss", loss, step)
        values = extra.get("values")
        if values is not None and plan.rows:
            self.defer_stats(step, plan.rows, values, extra["shapes"])
        light = extra.get("light")
        if light is not None:
            return self._light(step, plan, np.asarray(light))
        return self.locate(step, plan, extra)

    def defer_stats(self, step: int, rows: Sequence[Row], values: Any, shapes: Any) -> None:
        """Hand a step's values to the writer thread, in bounded chunks, waiting for room."""
        if self.hand_over(step, rows, values, shapes):
            self.lost(step)

    def hand_over(self, step: int, rows: Sequence[Row], values: Any, shapes: Any) -> bool:
        """:meth:`defer_stats` without the warning; returns whether the writer dropped some.

        Only ``writer.defer`` is called: a helper thread may hand a step's values over while
        the training thread waits in Keras's train function (see
        :class:`vizdebug.keras.outside.OutsideStep`); :meth:`lost` then follows on the
        training thread.
        """
        writer = self.writer
        if not rows:
            return False
        # bounded chunks with back-pressure: a step waits for the writer, nothing is dropped
        items = stats_items(
            step, time.time(), rows, values, shapes, bins=self.bins,
            chunk_bytes=max(1 << 16, min(8 << 20, writer.max_queue_bytes // 8)),
            wait_for_room=self.max_stall,
        )  # fmt: skip
        before = writer.dropped.get("deferred", 0)
        for item in items:
            writer.defer(item)
        return writer.dropped.get("deferred", 0) > before

    def lost(self, step: int) -> None:
        """A recorded step's statistics the writer could not take in time: say so, once."""
        self._lost_steps += 1
        if self._lost_steps > 1:
            return
        text = (
            f"step {step}: statistics dropped: the writer had no room for them within "
            f"max_stall={self.max_stall} s (counted in run.json under dropped.deferred; later "
            "losses are counted, not warned)"
        )
        self.writer.note("vizdebug/keras", text, step=step)
        warnings.warn(f"vizdebug: {text}", RuntimeWarning, stacklevel=3)

    def _light(self, step: int, plan: Plan, vector: np.ndarray[Any, Any]) -> Finding | None:
        self.writer.scalar("loss", float(vector[0]), step)
        if math.isfinite(vector[1]):
            return None
        if self.replay is None or plan.layout is None:  # never silent about a flagged step
            return self.unreproduced(step, float(vector[0]), float(vector[1]))
        return self.replay(step, plan.layout, vector)

    def locate(self, step: int, plan: Plan, extra: dict[str, Any]) -> Finding | None:
        """The first non-finite value among a fully checked step's results (reported)."""
        counts = extra.get("counts")
        if counts is None:
            return None
        counts = np.asarray(counts)
        if counts.size == 0:
            return None
        io = _unpack(np.asarray(extra["io"]), np.asarray(extra["io_shapes"]), plan.io_ranks)
        self.last_io = dict(zip(plan.io_names, io, strict=True))
        finding = self._locate(step, plan, counts, io)
        if finding is not None:
            self.report(finding, dict(zip(plan.io_names, io, strict=True)))
        return finding

    def stale_weight(self, step: int, values: Sequence[np.ndarray[Any, Any]]) -> Finding | None:
        """A weight already non-finite when ``step`` began: the previous update made it so."""
        for ref, value in zip(self.weights, values, strict=True):
            if np.isfinite(value).all():
                continue
            nan, pos, neg = (int(np.count_nonzero(m)) for m in _masks(value))
            site = Site(ref.slot.name, ref.slot.type, "optimizer", "weight", param=ref.name)
            kind = "nan" if nan or not (pos or neg) else "inf"
            message = (
                f"step {step - 1}: first non-finite value ({kind}) in the optimizer step: "
                f"{site.describe()} [{nan} NaN, {pos} +Inf, {neg} -Inf]; the gradients of that "
                "step were finite: the update itself overflowed or divided by zero (learning "
                "rate, optimizer state)."
            )
            finding = Finding(kind, site, "weight", message, nan, pos, neg, step - 1)
            self.report(finding)
            return finding
        return None

    def unreproduced(self, step: int, loss: float, total: float) -> Finding:
        """The finding of a flagged step whose replay showed nothing; checks exactly from now on."""
        self.exact = True
        if math.isfinite(loss):
            site = Site("", type(self.model).__name__, "backward", "grad")
            where = "in the weight gradients"
        else:
            site = Site("", "loss", "forward", "loss")
            where = "in the loss"
        message = (
            f"step {step}: non-finite value {where}; running the batch again did not reproduce "
            "it (the step depends on state vizdebug does not restore, such as Python-side "
            "counters or a global random generator), so the layer that made it is not known. "
            "Every layer is checked on every step from now on."
        )
        kind = "nan" if math.isnan(total) or math.isnan(loss) else "inf"
        finding = Finding(kind, site, site.role, message, step=step)
        self.report(finding)
        return finding

    def _locate(
        self, step: int, plan: Plan, counts: np.ndarray[Any, Any], io: list[np.ndarray[Any, Any]]
    ) -> Finding | None:
        for i in np.flatnonzero(counts.sum(axis=1)):  # an overflowing sum has no counts
            nan, pos, neg = (int(c) for c in counts[i])
            site = plan.sites[int(i)]
            role, detail = site.role, ""
            ins = [io[j] for j in plan.io_of.get(int(i), ())]
            if site.role == "output" and any(not np.isfinite(a).all() for a in ins):
                role = "input"
                detail = (
                    " It was already present in the layer's input: it came from the data or "
                    "from code outside the model's layers."
                )
            elif site.role == "grad_output" and plan.users.get(int(i)):
                # the layers consuming this output had finite output gradients (they come
                # first in backward order): the backward of one of them produced it
                users = plan.users[int(i)]
                detail = (
                    f" The gradient of {site.describe()} was computed by the backward of "
                    + ", ".join(f"{u.module!r} ({u.module_type})" for u in users)
                    + ", whose own output gradient was finite."
                )
                where, site, role = site, users[0], "grad_input"
                kind = "nan" if nan or not (pos or neg) else "inf"
                message = (
                    f"step {step}: first non-finite value ({kind}) in the backward pass: "
                    f"grad_input of layer {site.module!r} ({site.module_type}) [{nan} NaN, "
                    f"{pos} +Inf, {neg} -Inf] (the gradient it passed to "
                    f"{where.module or '(model)'!r}).{detail}"
                )
                return Finding(kind, site, role, message, nan, pos, neg, step)
            elif site.role == "grad_output":
                detail = (
                    " It was already non-finite when it reached this output: it comes from "
                    "the loss or from code outside the model's layers."
                )
            kind = "nan" if nan or not (pos or neg) else "inf"
            message = (
                f"step {step}: first non-finite value ({kind}) in the {site.phase} pass: "
                f"{site.describe()} [{nan} NaN, {pos} +Inf, {neg} -Inf].{detail}"
            )
            return Finding(kind, site, role, message, nan, pos, neg, step)
        return None

    def report(self, f: Finding, io: dict[str, np.ndarray[Any, Any]] | None = None) -> None:
        """Write the anomaly (and a flight-recorder snapshot), warn, remember the finding."""
        self.finding = f
        s = f.site
        self.writer.anomaly(
            f.kind, step=f.step, module=s.module, module_type=s.module_type, phase=s.phase,
            role=f.role, op=f.op, message=f.message, nan=f.nan, posinf=f.posinf, neginf=f.neginf,
        )  # fmt: skip
        if self.flight_recorder and io and self._snapshots < self.max_snapshots:
            self._snapshots += 1
            self.writer.snapshot(io, f.step, reason="anomaly")
        # one report per anomaly: a warning the user can filter, else (raise mode: the error
        # follows; check_numerics only) the log
        if self.on_anomaly in ("warn", "stop"):
            warnings.warn(f.message, NonFiniteWarning, stacklevel=2)
        else:
            log.warning("vizdebug: %s", f.message)
