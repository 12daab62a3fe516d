"""Finiteness checks and packing as TensorFlow ops (graph- and eager-safe).

The training step's own work stays small: :func:`finite_flags` and :func:`nonfinite_counts`
for the NaN/Inf checks, :func:`pack` to hand the described tensors to the host in one vector
(the statistics are computed there, by the writer thread: :mod:`vizdebug.tf.deferred`). No NaN
or Inf constant is ever made (``enable_check_numerics`` would flag it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

__all__ = [
    "dtype_name",
    "finite_flags",
    "nonfinite_counts",
    "own_function",
    "pack",
    "shape_vector",
    "skip_reason",
]


def dtype_name(t: Any) -> str:
    """The dtype as numpy spells it (``"float32"``, ``"bfloat16"``, ...)."""
    return str(t.dtype.name)


def skip_reason(t: object) -> str | None:
    """Why a value cannot get statistics (None when it can); reads metadata only."""
    if not isinstance(t, tf.Tensor | tf.Variable):
        if isinstance(t, tf.SparseTensor | tf.RaggedTensor):
            return f"{type(t).__name__} (not a dense tensor)"
        return f"not a tensor ({type(t).__name__})"
    dtype = t.dtype
    if dtype.is_complex:
        return f"{dtype.name} tensor (complex)"
    if not dtype.is_floating:
        return f"{dtype.name} tensor (not floating point)"
    if t.shape.rank is None:
        return "tensor of unknown rank"
    return None


def finite_flags(tensors: Sequence[Any]) -> tf.Tensor:
    """One float32 value per tensor, finite when every element of that tensor is finite.

    The value is the tensor's sum (one pass); a NaN or Inf makes it non-finite. A sum can also
    overflow for huge finite values, so a non-finite flag is confirmed with
    :func:`nonfinite_counts` before it is reported.
    """
    if not tensors:
        return tf.zeros([0], tf.float32)
    return tf.stack([tf.cast(tf.reduce_sum(t), tf.float32) for t in tensors])


def nonfinite_counts(tensors: Sequence[Any]) -> tf.Tensor:
    """``[len(tensors), 3]`` int32: NaN, +Inf and -Inf counts of each tensor.

    Counted tensor by tensor. Counting one concatenated vector with ``tf.repeat`` segment ids
    made a recording MobileNetV2 step (96 px, batch 16) an 11-16 GB process instead of 1.6 GB,
    although that branch never ran (measured; the graph optimizer working on the segment ids
    of a static-shape graph is the likely cause, not confirmed).
    """
    if not tensors:
        return tf.zeros([0, 3], tf.int32)
    rows = []
    for t in tensors:
        big = tf.constant(t.dtype.max, t.dtype)
        rows.append(tf.stack([
            tf.math.count_nonzero(tf.math.is_nan(t), dtype=tf.int32),
            tf.math.count_nonzero(t > big, dtype=tf.int32),
            tf.math.count_nonzero(t < -big, dtype=tf.int32),
        ]))  # fmt: skip
    return tf.stack(rows)


def pack(tensors: Sequence[Any], *, wide: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Several float tensors as one float32 (``wide``: float64) vector plus their shapes."""
    dt = tf.float64 if wide else tf.float32
    if not tensors:
        return tf.zeros([0], dt), tf.zeros([0], tf.int32)
    flat = tf.concat([tf.reshape(tf.cast(t, dt), [-1]) for t in tensors], axis=0)
    return flat, shape_vector(tensors)


def shape_vector(tensors: Sequence[Any]) -> tf.Tensor:
    """The run-time shapes of several tensors of known rank, concatenated (int32)."""
    if not tensors:
        return tf.zeros([0], tf.int32)
    return tf.concat([tf.shape(t, out_type=tf.int32) for t in tensors], axis=0)


def own_function(fn: Callable[..., Any], **options: Any) -> Any:
    """``tf.function(fn, autograph=False, **options)`` for vizdebug's own step functions.

    Each model (each ``compile``) needs its own trace of these functions, so a process that
    fits several models traces the same Python code several times; TensorFlow's "triggered
    tf.function retracing" heuristic counts traces by code object and would then warn about
    vizdebug, not about the user's code. The warning is turned off for these functions only
    (a private attribute of TensorFlow's ``Function``; left alone where it does not exist).
    """
    function = tf.function(fn, autograph=False, **options)
    if hasattr(function, "_omit_frequent_tracing_warning"):
        function._omit_frequent_tracing_warning = True
    return function
