"""Copies of vizdebug's data in TensorBoard's own summary kinds, for its native dashboards.

The durable store keeps statistics packed per step in one ``vizdebug/stats`` tensor, which only
the vizdebug plugin and readers understand. :class:`NativeEncoder` adds, next to those records,
summaries TensorBoard's built-in dashboards read:

========================  ===========================================  ==================
tag                       what                                         dashboard
========================  ===========================================  ==================
``grad_norm/<name>``      L2 norm of a parameter's gradient (``grad``)  Scalars
``update_ratio/<name>``   ``|update| / |weight|``, only when the        Scalars
                          adapter does not write it itself
``activations/<name>``    histogram of a module's output (``output``)  Histograms,
``gradients/<name>``      histogram of a gradient (``grad``)           Distributions
``weights/<name>``        histogram of a parameter (``weight``)
``run_info``              one markdown table per process                Text
``anomalies``             one markdown table per step with anomalies   Text
                          (all of the step's, in the order found:
                          the origin first)
``notes``                 notes (skipped layers, sink failures, ...)   Text
(graph)                   a serialized ``GraphDef`` (:class:`Graph`)    Graphs
========================  ===========================================  ==================

TensorBoard slows down badly with thousands of tags, so the number of names that get native
copies is capped (first come, first served, in the order the names are first recorded):
``max_scalar_names`` (256) per scalar family and ``max_histogram_names`` (16) per histogram
role. The environment sets the caps for runs the writer creates: ``VIZDEBUG_TB_NATIVE=0``
turns the copies off, ``VIZDEBUG_TB_SCALARS=N`` and ``VIZDEBUG_TB_HISTOGRAMS=N`` change the
caps, ``VIZDEBUG_TB_INCLUDE="conv*,fc*"`` restricts the names to ``fnmatch`` patterns. The
vizdebug dashboard plugin always shows every module and every rank, whatever the caps; the
native copies come from rank 0 only (TensorBoard merges a run directory's files into one run,
so every rank writing the same tags would clash).

A statistic of a tensor with no finite values is NaN in the native scalars (TensorBoard draws
it as NaN), never the 0 the packed row holds, and such a tensor gets no histogram.

TensorBoard's Text dashboard shows one text per tag and step (the last written), while the
anomalies of a step can arrive in several batches (the origin in the forward pass, findings of
the backward pass or the optimizer later). The encoder keeps the anomalies of the latest steps
and writes, for every batch that adds some, the step's whole table again: the text TensorBoard
shows holds every anomaly of its step, origin first, and a crash after the first batch still
leaves the origin on disk.

Every native record is an ``Event`` proto whose ``source_metadata.writer`` is
:data:`NATIVE_WRITER`; :class:`vizdebug.runs.codec.Decoder` skips those records, so readers never
count the copies twice.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from tensorboard.compat.proto import (
    event_pb2,
)

from .. import yielding
from ..batch import StatsBlock
from ..events import Anomaly, Event, Note, RunInfo, Scalar, TensorStats
from ..stats import COLUMNS, stats_to_row
from .codec import NATIVE_WRITER
from .native_step import Layout, NativeStep, table, wrapped
from .wire import block_histos, histo_size, value_key, varint

__all__ = ["HISTOGRAM_TAGS", "NATIVE_WRITER", "Graph", "NativeConfig", "NativeEncoder"]

#: Tag prefix of the native histograms, by role.
HISTOGRAM_TAGS: Mapping[str, str] = {
    "output": "activations",
    "grad_output": "activation_grads",
    "grad": "gradients",
    "weight": "weights",
    "update": "updates",
    "input": "inputs",
}

_MAX_SCALAR_NAMES = 256
_MAX_HISTOGRAM_NAMES = 16
#: Steps whose anomalies the encoder keeps, to rewrite their table when more arrive.
_ANOMALY_STEPS = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Graph(Event):
    """A model graph for TensorBoard's Graphs dashboard.

    Attributes:
        graph_def: A serialized ``tensorflow.GraphDef`` (for Keras, the traced function's
            ``graph.as_graph_def().SerializeToString()``; for torch, the proto
            ``torch.utils.tensorboard``'s graph tracer builds).
    """

    graph_def: bytes


@dataclass(frozen=True, slots=True)
class NativeConfig:
    """What :class:`NativeEncoder` copies into native summaries.

    Attributes:
        enabled: Write native summaries at all.
        max_scalar_names: Names per scalar family (``grad_norm``, ``update_ratio``).
        max_histogram_names: Names per histogram role.
        histogram_roles: Roles that get native histograms.
        include: ``fnmatch`` patterns a name must match to get any native copy.
    """

    enabled: bool = True
    max_scalar_names: int = _MAX_SCALAR_NAMES
    max_histogram_names: int = _MAX_HISTOGRAM_NAMES
    histogram_roles: tuple[str, ...] = ("output", "grad", "weight")
    include: tuple[str, ...] = ("*",)

    def __post_init__(self) -> None:
        if self.max_scalar_names < 0 or self.max_histogram_names < 0:
            raise ValueError("the native summary caps must be 0 or more")
        unknown = [r for r in self.histogram_roles if r not in HISTOGRAM_TAGS]
        if unknown:
            raise ValueError(
                f"unknown histogram roles {unknown}; use some of {list(HISTOGRAM_TAGS)}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NativeConfig:
        """The configuration the ``VIZDEBUG_TB_*`` environment variables ask for.

        Raises:
            ValueError: A variable holds something other than what it takes.
        """
        env = os.environ if environ is None else environ

        def number(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"{name} must be a whole number, got {raw!r}") from None

        enabled = env.get("VIZDEBUG_TB_NATIVE", "1").strip().lower() not in ("0", "false", "no")
        patterns = tuple(p.strip() for p in env.get("VIZDEBUG_TB_INCLUDE", "").split(",") if p)
        return cls(
            enabled=enabled,
            max_scalar_names=number("VIZDEBUG_TB_SCALARS", _MAX_SCALAR_NAMES),
            max_histogram_names=number("VIZDEBUG_TB_HISTOGRAMS", _MAX_HISTOGRAM_NAMES),
            include=patterns or ("*",),
        )


class _Quota:
    """First-come names admitted up to a cap."""

    def __init__(self, cap: int, include: tuple[str, ...]) -> None:
        self.cap = cap
        self.include = include
        self.admitted: set[str] = set()
        self.refused: set[str] = set()

    def __call__(self, name: str) -> bool:
        if name in self.admitted:
            return True
        if name in self.refused:
            return False
        ok = len(self.admitted) < self.cap and (
            self.include == ("*",) or any(fnmatch.fnmatchcase(name, p) for p in self.include)
        )
        (self.admitted if ok else self.refused).add(name)
        return ok


_L2 = COLUMNS.index("l2")
_COUNTS = [COLUMNS.index(c) for c in ("numel", "nan", "posinf", "neginf")]


def _l2_or_nan(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The L2 column, NaN where a tensor has no finite values (its row holds 0 there)."""
    numel, nan, posinf, neginf = (matrix[:, c] for c in _COUNTS)
    finite = numel - nan - posinf - neginf
    l2 = matrix[:, _L2]
    # numel 0 (an empty tensor) has no values at all: its norm 0 is true
    return np.where((finite <= 0) & (numel > 0), np.nan, l2)


class NativeEncoder:
    """Turns a batch of events into extra serialized ``Event`` protos for native dashboards.

    Stateful (the caps are per run); one per run-directory sink, used from its thread only.

    Args:
        config: What to copy; default :meth:`NativeConfig.from_env`.
    """

    def __init__(self, config: NativeConfig | None = None) -> None:
        self.config = NativeConfig.from_env() if config is None else config
        cfg = self.config
        self._scalar_ok = _Quota(cfg.max_scalar_names, cfg.include)
        self._ratio_ok = _Quota(cfg.max_scalar_names, cfg.include)
        self._histo_ok = {
            role: _Quota(cfg.max_histogram_names, cfg.include) for role in cfg.histogram_roles
        }
        self._adapter_ratios = False
        self._plans: dict[tuple[str, str, int], tuple[str, bytes | None, bytes | None]] = {}
        self._layouts: dict[tuple[int, int], Layout] = {}
        self._batch: Sequence[object] | None = None
        self._anomalies: dict[int, list[tuple[object, ...]]] = {}
        self._handlers: dict[type, Callable[[Any, NativeStep], None]] = {
            TensorStats: self._stats,
            Anomaly: self._anomaly,
            Note: self._note,
            RunInfo: self._run_info,
        }

    def encode(self, items: Sequence[object]) -> list[bytes]:
        """Native records for a batch (events and packed scalars, as the sink receives them)."""
        if not self.config.enabled:
            return []
        self._batch = items
        out: list[bytes] = []
        steps: dict[int, NativeStep] = {}
        for item in items:
            if type(item) is Graph:
                ev = event_pb2.Event(
                    step=item.step, wall_time=item.wall_time, graph_def=item.graph_def
                )
                ev.source_metadata.writer = NATIVE_WRITER
                out.append(cast(bytes, ev.SerializeToString()))
                continue
            if type(item) is StatsBlock:
                step = steps.get(item.step)
                if step is None:
                    step = steps[item.step] = NativeStep(item.step, item.wall_time)
                self._rows(item.rows, item.matrix, step)
                continue
            handler = self._handlers.get(type(item))
            if handler is not None:
                event = cast(Event, item)
                step = steps.get(event.step)
                if step is None:
                    step = steps[event.step] = NativeStep(event.step, event.wall_time)
                handler(event, step)
        for step in steps.values():
            for group in step.pending.values():  # single TensorStats events, packed by bins
                meta = [(name, role, call) for name, role, call, _ in group]
                self._rows(meta, np.array([row for *_, row in group], dtype=np.float64), step)
            record = step.serialize()
            if record is not None:
                out.append(record)
        return out

    def _stats(self, e: TensorStats, step: NativeStep) -> None:
        """Keep a single statistics event as a packed row: :meth:`_rows` encodes it."""
        row = (e.name, e.role, e.call, stats_to_row(e.stats))
        step.pending.setdefault(len(e.stats.hist_counts), []).append(row)

    def _rows(
        self, rows: Sequence[Sequence[Any]], matrix: npt.NDArray[np.float64], step: NativeStep
    ) -> None:
        """Native values of packed statistics: ``rows`` start with ``(name, role, call)``,
        ``matrix`` holds one :data:`~vizdebug.stats.COLUMNS` row plus counts for each.

        The rows of a run's steps repeat: what each row becomes is worked out once per
        layout (:meth:`_layout`), and a step only fills in its values, a list comprehension
        per kind, on a thread that shares the GIL with training.
        """
        if not rows:
            return
        width = len(COLUMNS)
        plan = self._layout(rows, matrix.shape[1] - width)
        l2_col = _l2_or_nan(matrix) if plan.scalars or plan.norms else None
        if plan.scalars and l2_col is not None:
            with np.errstate(over="ignore"):  # simple_value is a float32: beyond its range, inf
                l2_bytes = l2_col.astype("<f4").tobytes()
            step.raw += [head + l2_bytes[4 * i : 4 * i + 4] for i, head in plan.scalars]
        if plan.norms and l2_col is not None:
            l2 = l2_col.tolist()
            step.norms.update({key: l2[i] for i, key in plan.norms})
        if plan.histos:
            histos = block_histos(matrix[:, :width], matrix[:, width:])
            step.raw += [head + h for i, head in plan.histos if (h := histos[i]) is not None]
        if plan.updates and not self._adapter_writes_ratios():
            step.ratio_names += plan.updates
            step.ratio_ok = self._ratio_ok

    def _layout(self, rows: Sequence[Sequence[Any]], bins: int) -> Layout:
        """What each row of a layout becomes (the last layouts seen are kept)."""
        key = (len(rows), bins)
        plan = self._layouts.get(key)
        if plan is not None and (plan.rows is rows or plan.rows == rows):
            return plan
        plan = Layout(rows)
        histo_length = histo_size(bins) if bins else 0
        for i, row in enumerate(yielding.offering(rows)):
            role = row[1]
            suffix, scalar_key, histo_key = self._plan(row[0], role, row[2])
            if scalar_key is not None:
                plan.scalars.append((i, wrapped(scalar_key, 4)))
            elif role in ("weight", "update"):
                plan.norms.append((i, (suffix, role)))
            if histo_key is not None and bins:
                head = histo_key + varint(histo_length)
                plan.histos.append((i, wrapped(head, histo_length)))
            if role == "update":
                plan.updates.append(suffix)
        if len(self._layouts) >= 16:
            self._layouts.clear()
        self._layouts[key] = plan
        return plan

    def _plan(self, name: str, role: str, call: int) -> tuple[str, bytes | None, bytes | None]:
        """``(suffix, grad-norm value key, histogram value key)`` of a row, decided once.

        The keys are a serialized ``Summary.Value``'s tag field and the next field's key
        (``simple_value`` or ``histo``), or None where a cap refuses the name: the caps
        admit or refuse a name for the run, so a run's later steps only look it up.
        """
        key = (name, role, call)
        plan = self._plans.get(key)
        if plan is None:
            suffix = name if call == 0 else f"{name}#{call}"
            scalar = None
            if role == "grad" and self._scalar_ok(suffix):
                scalar = value_key(f"grad_norm/{suffix}", b"\x15")  # field 2, 32-bit
            histo = None
            quota = self._histo_ok.get(role)
            if quota is not None and quota(suffix):
                histo = value_key(f"{HISTOGRAM_TAGS[role]}/{suffix}", b"\x2a")  # field 5
            if len(self._plans) >= 65536:
                self._plans.clear()
            plan = self._plans[key] = (suffix, scalar, histo)
        return plan

    def _adapter_writes_ratios(self) -> bool:
        # The torch adapter writes update_ratio/<name> itself; look once per batch, and only
        # for batches that hold updates.
        items, self._batch = self._batch, None
        if items is not None and not self._adapter_ratios:
            self._adapter_ratios = any(
                (type(i) is tuple and str(i[0]).startswith("update_ratio/"))
                or (type(i) is Scalar and i.tag.startswith("update_ratio/"))
                for i in items
            )
        return self._adapter_ratios

    def _anomaly(self, e: Anomaly, step: NativeStep) -> None:
        counts = f"{e.nan} NaN, {e.posinf} +Inf, {e.neginf} -Inf"
        known = self._anomalies.get(e.step)
        if known is None:
            if len(self._anomalies) >= _ANOMALY_STEPS:
                del self._anomalies[min(self._anomalies)]
            known = self._anomalies[e.step] = []
        # an empty name with a module type is the root module (the model); without one, unknown
        module = e.module or ("(root)" if e.module_type else "?")
        row = (e.step, e.rank, e.kind, module, e.phase, e.role, counts, e.message)
        known.append(row)
        # the step's whole table, earlier batches' anomalies (the origin) first
        step.anomalies = known

    def _note(self, e: Note, step: NativeStep) -> None:
        step.notes.append((e.tag, e.text))

    def _run_info(self, e: RunInfo, step: NativeStep) -> None:
        rows: list[tuple[str, object]] = [
            ("run", e.run),
            ("rank", f"{e.rank} of {e.world_size}"),
            ("framework", e.framework or "(none)"),
            ("host", e.host),
            ("pid", e.pid),
            ("command", " ".join(e.argv)),
        ]
        rows += [(f"version: {k}", v) for k, v in sorted(e.versions.items())]
        rows += [(f"dropped: {k}", v) for k, v in sorted(e.dropped.items())]
        step.run_info = table(("fact", "value"), rows)
