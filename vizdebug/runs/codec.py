"""Pure functions between vizdebug events and TensorBoard ``Event`` protos.

Scalars become ordinary ``simple_value`` summaries, so TensorBoard's Scalars dashboard reads them
as it reads any run. Tensor statistics of one step are packed into a single tensor summary
(tag ``vizdebug/stats``, plugin ``vizdebug``): a string tensor holding a JSON header (one row
description per tensor) and a float64 matrix in :data:`vizdebug.stats.COLUMNS` order. Anomalies,
model structure, run info, snapshot references and notes are JSON in string tensor summaries
(tags ``vizdebug/<kind>``). The decoder also reads what other tools write: ``simple_value``
scalars here, ``histo`` histograms and TF2 tensor scalars and histograms through
:mod:`vizdebug.runs.foreign`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from tensorboard.compat.proto import (
    event_pb2,
    summary_pb2,
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)

from ..batch import PackedScalar, StatsBlock
from ..events import (
    Event,
    Scalar,
    TensorStats,
)
from ..stats import COLUMNS, stats_to_row
from .checked import (
    BASE_FIELDS,
    JSON_KINDS,
    BadRecordError,
    event_from_json,
    stats_header,
    type_name,
)
from .foreign import decode_tf2, histo_histogram

__all__ = [
    "PLUGIN_NAME",
    "BadRecordError",
    "Decoder",
    "ScalarTemplate",
    "StatsBlock",
    "encode_batch",
    "file_version_event",
]

PLUGIN_NAME = "vizdebug"
#: ``source_metadata.writer`` of the copies :mod:`vizdebug.runs.native` writes for
#: TensorBoard's own dashboards; the decoder skips them.
NATIVE_WRITER = "vizdebug-native"
STATS_TAG = "vizdebug/stats"
FORMAT_VERSION = 1

_KIND_OF: dict[type[Event], str] = {cls: kind for kind, cls in JSON_KINDS.items()}


@functools.cache
def _content(kind: str) -> bytes:
    return json.dumps({"kind": kind, "version": FORMAT_VERSION}).encode()


def _metadata(kind: str) -> summary_pb2.SummaryMetadata:
    content = _content(kind)
    # data_class: TensorBoard's data providers list a tag as a tensor only when it says so.
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=content
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )


def _string_tensor(*parts: bytes) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(parts))]
        ),
        string_val=list(parts),
    )


def file_version_event(wall_time: float) -> bytes:
    """The first event of every event file."""
    ev = event_pb2.Event(wall_time=wall_time, file_version="brain.Event:2")
    return cast(bytes, ev.SerializeToString())


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def event_to_json(event: Event) -> bytes:
    """Serialize one JSON-stored event (anomaly, structure, ...) without its base fields."""
    body = _jsonable(event)
    for name in BASE_FIELDS:
        body.pop(name, None)
    return json.dumps(body, allow_nan=True, separators=(",", ":")).encode()


def _stats_value(items: Sequence[TensorStats]) -> summary_pb2.Summary.Value:
    bins = len(items[0].stats.hist_counts)
    rows = tuple((e.name, e.role, e.call, e.stats.dtype, tuple(e.stats.shape)) for e in items)
    matrix = np.array([stats_to_row(e.stats) for e in items], dtype="<f8")
    return _packed_value(bins, rows, matrix)


@functools.lru_cache(maxsize=16)
def _header(bins: int, rows: tuple[tuple[Any, ...], ...]) -> bytes:
    """The JSON header of a packed value: a run's steps repeat the same rows, encoded once."""
    listed = [[name, role, call, dtype, list(shape)] for name, role, call, dtype, shape in rows]
    return json.dumps(
        {"v": FORMAT_VERSION, "bins": bins, "rows": listed}, separators=(",", ":")
    ).encode()


def _packed_value(
    bins: int, rows: tuple[tuple[Any, ...], ...], matrix: npt.NDArray[np.float64]
) -> summary_pb2.Summary.Value:
    try:
        header = _header(bins, rows)
    except TypeError:  # an unhashable row (a list for a shape): encoded without the cache
        header = _header.__wrapped__(bins, rows)
    return summary_pb2.Summary.Value(
        tag=STATS_TAG,
        metadata=_metadata("stats"),
        tensor=_string_tensor(header, np.ascontiguousarray(matrix, dtype="<f8").tobytes()),
    )


def _block_proto(block: StatsBlock) -> bytes:
    value = _packed_value(block.matrix.shape[1] - len(COLUMNS), block.rows, block.matrix)
    ev = event_pb2.Event(
        wall_time=block.wall_time, step=block.step, summary=summary_pb2.Summary(value=[value])
    )
    return cast(bytes, ev.SerializeToString())


class ScalarTemplate:
    """One reused proto for the commonest record, a single scalar: 2x faster than a new one."""

    def __init__(self) -> None:
        self.event: Any = event_pb2.Event()
        self.value: Any = self.event.summary.value.add()
        self.tag = ""

    def encode(self, tag: str, value: float, step: int, wall_time: float) -> bytes:
        ev = self.event
        ev.step = step
        ev.wall_time = wall_time
        v = self.value
        if tag != self.tag:
            v.tag = self.tag = tag
        v.simple_value = value
        return ev.SerializeToString()  # type: ignore[no-any-return]


def _scalars_proto(scalars: Sequence[PackedScalar]) -> bytes:
    _tag, _value, step, wall = scalars[0]
    summary = summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v, _, _ in scalars]
    )
    ev = event_pb2.Event(wall_time=wall, step=step, summary=summary)
    return cast(bytes, ev.SerializeToString())


def _json_proto(event: Event, kind: str) -> bytes:
    value = summary_pb2.Summary.Value(
        tag=f"{PLUGIN_NAME}/{kind}",
        metadata=_metadata(kind),
        tensor=_string_tensor(event_to_json(event)),
    )
    ev = event_pb2.Event(
        wall_time=event.wall_time, step=event.step, summary=summary_pb2.Summary(value=[value])
    )
    return cast(bytes, ev.SerializeToString())


def _stats_proto(stats: Sequence[TensorStats]) -> bytes:
    first = stats[0]
    ev = event_pb2.Event(
        wall_time=first.wall_time,
        step=first.step,
        summary=summary_pb2.Summary(value=[_stats_value(stats)]),
    )
    return cast(bytes, ev.SerializeToString())


def _encode_scalars(run: Sequence[PackedScalar], single: Any, out: list[bytes]) -> None:
    n = len(run)
    k = 0
    while k < n:
        first = run[k]
        step = first[2]
        j = k + 1
        while j < n and run[j][2] == step:
            j += 1
        if j == k + 1:
            out.append(single(*first))
        else:
            out.append(_scalars_proto(run[k:j]))
        k = j


def encode_batch(
    events: Sequence[Event | PackedScalar | StatsBlock], template: ScalarTemplate | None = None
) -> list[bytes]:
    """Encode events into serialized ``Event`` protos, grouping what shares a step.

    Consecutive scalars of one step share one proto; the tensor statistics of one step (and
    one bin count) become one packed ``vizdebug/stats`` value. Events no stored kind covers
    (for example :class:`~vizdebug.events.Histogram`) are skipped.

    Args:
        events: Events (or packed scalars, see :mod:`vizdebug.batch`), in order.
        template: A reusable scalar proto (not thread-safe: one per encoding thread).
    """
    items = [(e.tag, e.value, e.step, e.wall_time) if isinstance(e, Scalar) else e for e in events]
    out: list[bytes] = []
    single = (template or ScalarTemplate()).encode
    n = len(items)
    i = 0
    while i < n:
        item = items[i]
        if type(item) is tuple:
            j = i + 1
            while j < n and type(items[j]) is tuple:
                j += 1
            _encode_scalars(items[i:j], single, out)  # type: ignore[arg-type]
            i = j
            continue
        if type(item) is StatsBlock:
            if item.rows:
                out.append(_block_proto(item))
            i += 1
            continue
        event = cast(Event, item)
        if type(event) is TensorStats:
            by_bins: dict[int, list[TensorStats]] = {}
            step = event.step
            while i < n:
                e = items[i]
                if type(e) is not TensorStats or e.step != step:
                    break
                by_bins.setdefault(len(e.stats.hist_counts), []).append(e)
                i += 1
            out.extend(_stats_proto(g) for g in by_bins.values())
            continue
        name = _KIND_OF.get(type(event))
        if name is not None:
            out.append(_json_proto(event, name))
        i += 1
    return out


class Decoder:
    """Turns serialized ``Event`` protos of one file into vizdebug events.

    Stateful because TF2 summaries carry their plugin metadata on a tag's first value only.

    Args:
        run: Run name to stamp on decoded events.
        rank: Rank to stamp.
        expand_stats: Yield :class:`StatsBlock` packed statistics unpacked into
            :class:`~vizdebug.events.TensorStats` events (the default) or as they are.
    """

    def __init__(self, run: str = "", rank: int = 0, *, expand_stats: bool = True) -> None:
        self.run = run
        self.rank = rank
        self.expand_stats = expand_stats
        self._plugin_of: dict[str, tuple[str, bytes]] = {}
        # A model writes the same stats header step after step: parse each distinct one once.
        self._header: tuple[bytes, tuple[Any, ...], int] = (b"", (), 0)

    def decode(self, record: bytes) -> list[Event | StatsBlock]:
        """Decode one record (raises ``google.protobuf.message.DecodeError`` if it is not one)."""
        proto = event_pb2.Event.FromString(record)
        if not proto.HasField("summary") or proto.source_metadata.writer == NATIVE_WRITER:
            return []  # native copies (vizdebug.runs.native) repeat what the records hold
        base = {
            "step": proto.step,
            "wall_time": proto.wall_time,
            "run": self.run,
            "rank": self.rank,
        }
        out: list[Event | StatsBlock] = []
        for value in proto.summary.value:
            out.extend(self._value(value, base))
        return out

    def _value(
        self, value: summary_pb2.Summary.Value, base: dict[str, Any]
    ) -> Sequence[Event | StatsBlock]:
        which = value.WhichOneof("value")
        tag = value.tag
        if which == "simple_value":
            return [Scalar(**base, tag=tag, value=float(value.simple_value))]
        if which == "histo":
            return [histo_histogram(tag, value.histo, base)]
        if which != "tensor":
            return []
        if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
            pd = value.metadata.plugin_data
            self._plugin_of[tag] = (pd.plugin_name, pd.content)
        plugin, content = self._plugin_of.get(tag, ("", b""))
        if plugin == PLUGIN_NAME:
            return self._vizdebug(value.tensor, content, base)
        return decode_tf2(plugin, tag, value.tensor, base)

    def _vizdebug(
        self, tensor: tensor_pb2.TensorProto, content: bytes, base: dict[str, Any]
    ) -> list[Event | StatsBlock]:
        meta = json.loads(content or b"{}")
        if not isinstance(meta, dict):
            raise BadRecordError(f"plugin metadata should be a JSON object, is {type_name(meta)}")
        kind = meta.get("kind", "")
        parts = list(tensor.string_val)
        if kind == "stats":
            if len(parts) != 2:
                raise BadRecordError(f"a stats record should have 2 parts, has {len(parts)}")
            if parts[0] != self._header[0]:
                self._header = (parts[0], *stats_header(parts[0]))
            _, rows, bins = self._header
            width = len(COLUMNS) + bins
            if len(parts[1]) != 8 * width * len(rows):
                raise BadRecordError(
                    f"stats matrix of {len(parts[1])} bytes, expected {8 * width * len(rows)}"
                )
            matrix = np.frombuffer(parts[1], dtype="<f8").reshape(len(rows), width)
            counts = np.concatenate([matrix[:, :5], matrix[:, len(COLUMNS) :]], axis=1)
            if not (np.isfinite(counts).all() and (counts >= 0).all()):
                raise BadRecordError("stats counts must be finite and non-negative")
            block = StatsBlock(
                step=base["step"],
                wall_time=base["wall_time"],
                run=base["run"],
                rank=self.rank,
                rows=rows,
                matrix=matrix,
            )
            return list(block.events()) if self.expand_stats else [block]
        if kind in JSON_KINDS and parts:
            return [event_from_json(kind, parts[0], base)]
        return []
