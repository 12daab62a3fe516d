"""Decoding vizdebug's JSON records with every field checked against its declared type.

A record read from disk is data from anywhere: a validly framed record may hold JSON that is
a list, a string or nested 100k deep, a ``phase`` that is a number, a snapshot path out of the
run directory. :func:`event_from_json` and :func:`stats_header` refuse such content with a
:class:`BadRecordError` (the reader turns it into a ``ReadProblem``), so no view ever gets an
event whose fields are not what its dataclass declares.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ..events import (
    Anomaly,
    Event,
    ModelStructure,
    ModuleInfo,
    Note,
    RunInfo,
    SnapshotRef,
)

__all__ = ["BASE_FIELDS", "JSON_KINDS", "BadRecordError", "event_from_json", "stats_header"]

JSON_KINDS: dict[str, type[Event]] = {
    "anomaly": Anomaly,
    "structure": ModelStructure,
    "run_info": RunInfo,
    "snapshot": SnapshotRef,
    "note": Note,
}
BASE_FIELDS = ("step", "wall_time", "run", "rank")


class BadRecordError(ValueError):
    """A well-framed record whose content is not what its kind promises (a typed field of the
    wrong type, a list where an object belongs, a path out of the run directory)."""


def type_name(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    return "null" if value is None else type(value).__name__


def _check(kind: str, key: str, annotation: str, value: Any) -> Any:
    """``value`` as field ``key`` of ``kind`` declares it (tuples from lists), or raise."""
    ann = annotation.replace(" ", "")
    if ann == "str":
        ok = isinstance(value, str)
    elif ann == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif ann == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif ann.startswith("tuple[str"):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    elif ann.startswith("Mapping[str,str]"):
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    elif ann.startswith("Mapping[str,int]"):
        ok = isinstance(value, dict) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value.values()
        )
    else:  # a field this reader has no rule for: refuse rather than guess
        ok = False
    if not ok:
        raise BadRecordError(f"{kind} field {key!r} should be {annotation}, is {type_name(value)}")
    return value


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in value
    ):
        raise BadRecordError(f"a shape should be a list of whole numbers, is {value!r:.60}")
    return tuple(value)


def _module(m: Any) -> ModuleInfo:
    if not isinstance(m, dict):
        raise BadRecordError(f"a module entry should be an object, is {type_name(m)}")
    shapes = m.get("output_shapes", [])
    if not isinstance(shapes, list):
        raise BadRecordError("module field 'output_shapes' should be a list of shapes")
    return ModuleInfo(
        name=_check("module", "name", "str", m.get("name")),
        type=_check("module", "type", "str", m.get("type")),
        params=_check("module", "params", "int", m.get("params", 0)),
        trainable=_check("module", "trainable", "int", m.get("trainable", 0)),
        output_shapes=tuple(_shape(s) for s in shapes),
    )


def _confined(path: str) -> str:
    """A snapshot reference: relative, inside the run directory (no ``..``, no drive)."""
    parts = path.replace("\\", "/").split("/")
    if not path or path.startswith("/") or ".." in parts or "\0" in path or ":" in parts[0]:
        raise BadRecordError(f"snapshot path {path[:80]!r} is not inside the run directory")
    return path


def event_from_json(kind: str, data: bytes, base: dict[str, Any]) -> Event:
    """Inverse of :func:`event_to_json` for ``vizdebug/<kind>`` records.

    Every field is checked against its declared type, so a record whose JSON is a list, or
    whose ``phase`` is a number, is refused here instead of failing later in a view.

    Raises:
        BadRecordError: The JSON is not an object or a field has the wrong type.
        ValueError: The bytes are not JSON (``RecursionError`` for absurdly deep JSON).
    """
    cls = JSON_KINDS[kind]
    body = json.loads(data)
    if not isinstance(body, dict):
        raise BadRecordError(f"a {kind} record should be a JSON object, is {type_name(body)}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in body.items():
        if key not in names or key in BASE_FIELDS:
            continue  # written by a newer vizdebug: ignore what we do not know
        if cls is ModelStructure and key == "modules":
            if not isinstance(value, list):
                raise BadRecordError("structure field 'modules' should be a list")
            kwargs[key] = tuple(_module(m) for m in value)
            continue
        kwargs[key] = _check(kind, key, str(names[key].type), value)
    for name, f in names.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in kwargs and name not in BASE_FIELDS:
            raise BadRecordError(f"a {kind} record has no {name!r}")
    if cls is SnapshotRef:
        _confined(kwargs["path"])
    return cls(**base, **kwargs)


def stats_header(raw: bytes) -> tuple[tuple[Any, ...], int]:
    """The rows and bin count of a packed statistics header, checked."""
    header = json.loads(raw)
    if not isinstance(header, dict) or not isinstance(header.get("rows"), list):
        raise BadRecordError("a stats header should be an object with a list of rows")
    bins = header.get("bins")
    if not isinstance(bins, int) or isinstance(bins, bool) or not 0 <= bins <= 1 << 16:
        raise BadRecordError(f"stats bins should be a whole number, is {bins!r:.40}")
    rows = []
    for row in header["rows"]:
        if not isinstance(row, list) or len(row) != 5:
            raise BadRecordError(
                f"a stats row should be [name, role, call, dtype, shape]: {row!r:.80}"
            )
        name, role, call, dtype, shape = row
        _check("stats", "name", "str", name)
        _check("stats", "role", "str", role)
        _check("stats", "call", "int", call)
        _check("stats", "dtype", "str", dtype)
        rows.append((name, role, call, dtype, _shape(shape)))
    return tuple(rows), bins
