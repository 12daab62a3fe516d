"""One step's native TensorBoard record: its values, and their serialization into one ``Event``.

:class:`~vizdebug.runs.native.NativeEncoder` decides what a batch's events become (caps,
tags, update ratios); a :class:`NativeStep` per step collects the result: protobuf
``Summary.Value`` messages (text tables, update ratios) and hand-serialized values (gradient
norms and histograms, :mod:`.wire`), written as one ``Event`` whose
``source_metadata.writer`` is :data:`~vizdebug.runs.codec.NATIVE_WRITER`. A :class:`Layout`
holds what each statistics row of a repeating layout becomes, worked out once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from tensorboard.compat.proto import (
    event_pb2,
    summary_pb2,
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)

from .codec import NATIVE_WRITER
from .wire import varint

__all__ = ["Layout", "NativeStep", "table", "wrapped"]


def _text(tag: str, markdown: str, description: str) -> summary_pb2.Summary.Value:
    from tensorboard.plugins.text import metadata as text_metadata

    return summary_pb2.Summary.Value(
        tag=tag,
        metadata=text_metadata.create_summary_metadata(tag, description),
        tensor=tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(),
            string_val=[markdown.encode()],
        ),
    )


def _cell(value: object) -> str:
    # Markdown table cells: keep one line and no column breaks; TensorBoard sanitizes HTML.
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table (TensorBoard's Text dashboard renders it), one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def wrapped(head: bytes, rest: int) -> bytes:
    """``head`` as the start of a ``Summary.value`` entry (field 1) whose message is ``head``
    followed by ``rest`` more bytes."""
    return b"\x0a" + varint(len(head) + rest) + head


class Layout:
    """What the rows of one layout become: ``(row, serialized start)`` of each gradient-norm
    scalar (then 4 bytes of float32) and each histogram (then its ``HistogramProto``), the
    norms kept for update ratios, and the parameters with an update row."""

    __slots__ = ("histos", "norms", "rows", "scalars", "updates")

    def __init__(self, rows: Sequence[Sequence[Any]]) -> None:
        self.rows = rows
        self.scalars: list[tuple[int, bytes]] = []
        self.histos: list[tuple[int, bytes]] = []
        self.norms: list[tuple[int, tuple[str, str]]] = []
        self.updates: list[str] = []


class NativeStep:
    """Native values of one step of one batch, serialized into one ``Event`` proto."""

    def __init__(self, step: int, wall_time: float) -> None:
        self.step = step
        self.wall_time = wall_time
        self.values: list[summary_pb2.Summary.Value] = []
        #: Serialized ``Summary.value`` entries, key and length included (hand-encoded
        #: histograms and gradient norms).
        self.raw: list[bytes] = []
        #: Single statistics events by bin count, ``(name, role, call, row)``.
        self.pending: dict[int, list[tuple[str, str, int, list[float]]]] = {}
        self.norms: dict[tuple[str, str], float] = {}
        self.ratio_names: list[str] = []
        self.ratio_ok: Callable[[str], bool] | None = None
        self.anomalies: list[tuple[object, ...]] = []
        self.notes: list[tuple[str, str]] = []
        self.run_info = ""

    def serialize(self) -> bytes | None:
        """The step's ``Event`` record (None when it has nothing to show)."""
        for name in self.ratio_names:
            upd = self.norms.get((name, "update"))
            w = self.norms.get((name, "weight"))
            if (
                upd is not None
                and w
                and math.isfinite(w)
                and self.ratio_ok is not None
                and self.ratio_ok(name)
            ):
                self.values.append(
                    summary_pb2.Summary.Value(tag=f"update_ratio/{name}", simple_value=upd / w)
                )
        if self.anomalies:
            header = ("step", "rank", "kind", "module", "phase", "role", "counts", "message")
            self.values.append(
                _text("anomalies", table(header, self.anomalies), "vizdebug anomalies")
            )
        if self.notes:
            self.values.append(_text("notes", table(("tag", "note"), self.notes), "vizdebug notes"))
        if self.run_info:
            self.values.append(_text("run_info", self.run_info, "vizdebug run info"))
        if not self.values and not self.raw:
            return None
        ev = event_pb2.Event(
            step=self.step, wall_time=self.wall_time, summary=summary_pb2.Summary(value=self.values)
        )
        ev.source_metadata.writer = NATIVE_WRITER
        data = cast(bytes, ev.SerializeToString())
        if self.raw:
            # a second occurrence of Event.summary (field 5): protobuf parsers merge the two,
            # concatenating their repeated values
            values = b"".join(self.raw)
            data += b"\x2a" + varint(len(values)) + values
        return data
