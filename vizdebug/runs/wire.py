"""Protobuf wire format by hand, for the native encoder's per-step hot path.

The native TensorBoard copies of a step's statistics are a few dozen histograms and scalars
encoded on the run-directory sink's thread, which competes with training for the GIL. Built
with the protobuf runtime, the messages took most of that thread's time; here every histogram
of a step is laid out at once as records of a numpy dtype with ``HistogramProto``'s wire layout,
and a value's tag prefix is encoded once per name. TensorBoard's own loader reads the result as
it reads the runtime's (``tests/tensorboard/test_native.py``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import numpy.typing as npt

from ..stats import COLUMNS

__all__ = ["block_histos", "histo_size", "value_key", "varint"]

_NUMEL, _NAN, _POSINF, _NEGINF = (COLUMNS.index(c) for c in ("numel", "nan", "posinf", "neginf"))
_MEAN, _STD, _LO, _HI = (COLUMNS.index(c) for c in ("mean", "std", "hist_lo", "hist_hi"))


@functools.lru_cache(maxsize=4096)
def varint(n: int) -> bytes:
    """Protobuf's base-128 varint of ``n`` (a length: a run repeats a handful of them)."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_DOUBLES = ("min", "max", "num", "sum", "sum_squares")


@functools.lru_cache(maxsize=16)
def _histo_layout(bins: int) -> np.dtype[Any]:
    """A packed record laid out as a serialized ``HistogramProto`` of ``bins`` buckets.

    Fields 1-5 are doubles (a key byte, then 8 bytes); fields 6 and 7 (``bucket_limit``,
    ``bucket``) packed doubles (a key byte, the length as a varint, then the values).
    """
    size = len(varint(8 * bins))
    fields: list[tuple[Any, ...]] = []
    for name in _DOUBLES:
        fields += [(f"{name}_key", "u1"), (name, "<f8")]
    fields += [("limits_key", "u1", (1 + size,)), ("limits", "<f8", (bins,))]
    fields += [("counts_key", "u1", (1 + size,)), ("counts", "<f8", (bins,))]
    return np.dtype(fields)


def histo_size(bins: int) -> int:
    """The length of a serialized ``HistogramProto`` of ``bins`` buckets from
    :func:`block_histos` (one length for every row of a bin count)."""
    return _histo_layout(bins).itemsize


def block_histos(
    heads: npt.NDArray[np.float64], counts: npt.NDArray[np.float64]
) -> list[bytes | None]:
    """Serialized ``HistogramProto`` of each packed row (None: nothing finite to show).

    Encoded by hand, all rows at once, as records of a numpy dtype with the message's layout:
    building the messages with the protobuf runtime (and later packing each row in Python)
    took most of the native encoder's time on a step of a few dozen tensors, on the sink's
    thread, which competes with training for the GIL.
    """
    bins = counts.shape[1]
    if not bins:
        return [None] * len(heads)
    finite = heads[:, _NUMEL] - heads[:, _NAN] - heads[:, _POSINF] - heads[:, _NEGINF]
    lo, hi = heads[:, _LO], heads[:, _HI]
    mean, std = heads[:, _MEAN], heads[:, _STD]
    layout = _histo_layout(bins)
    records = np.empty(len(heads), dtype=layout)
    with np.errstate(all="ignore"):
        width = (hi - lo) / bins
        records["limits"] = lo[:, None] + width[:, None] * np.arange(1, bins + 1)
        records["sum"] = np.where(np.isfinite(mean), mean * finite, 0.0)
        records["sum_squares"] = np.where(np.isfinite(std), (std * std + mean * mean) * finite, 0.0)
    records["min"], records["max"], records["num"], records["counts"] = lo, hi, finite, counts
    for field, name in enumerate(_DOUBLES, 1):
        records[f"{name}_key"] = (field << 3) | 1  # wire type 1: 64-bit
    size = varint(8 * bins)
    records["limits_key"] = np.frombuffer(b"\x32" + size, dtype=np.uint8)  # 6, length-delimited
    records["counts_key"] = np.frombuffer(b"\x3a" + size, dtype=np.uint8)  # 7, length-delimited
    data = records.tobytes()
    item = layout.itemsize
    return [
        data[i * item : (i + 1) * item] if n > 0 else None for i, n in enumerate(finite.tolist())
    ]


def value_key(tag: str, field: bytes) -> bytes:
    """The start of a serialized ``Summary.Value``: ``tag`` (field 1), then ``field``'s key."""
    name = tag.encode()
    return b"\x0a" + varint(len(name)) + name + field
