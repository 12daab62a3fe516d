"""Other tools' records, read as vizdebug events.

Torch's ``SummaryWriter`` and tensorboardX write histograms as ``histo`` summary values
(:func:`histo_histogram`); Keras's TensorBoard callback and ``tf.summary`` write TF2 tensor
summaries of the ``scalars`` and ``histograms`` plugins (:func:`decode_tf2`), the latter a
``[k, 3]`` tensor of bucket left edge, right edge and count (:func:`tf2_histogram`). They become
:class:`~vizdebug.events.Scalar` and :class:`~vizdebug.events.Histogram` events.
``simple_value`` scalars are vizdebug's own scalar format too and are decoded by
:class:`vizdebug.runs.codec.Decoder`, which calls these functions for everything else.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from tensorboard.compat.proto import summary_pb2, tensor_pb2

from ..events import Event, Histogram, Scalar

__all__ = ["decode_tf2", "histo_histogram", "tensor_to_array", "tf2_histogram"]


def tensor_to_array(tensor: tensor_pb2.TensorProto) -> npt.NDArray[Any]:
    """A ``TensorProto`` as a numpy array."""
    from tensorboard.util import tensor_util

    return np.asarray(tensor_util.make_ndarray(tensor))


def histo_histogram(tag: str, h: summary_pb2.HistogramProto, base: dict[str, Any]) -> Histogram:
    """A ``histo`` summary value (SummaryWriter, tensorboardX) as a histogram event.

    Args:
        tag: The value's tag.
        h: Its histogram.
        base: ``step``, ``wall_time``, ``run`` and ``rank`` of the event.
    """
    return Histogram(
        **base,
        tag=tag,
        min=h.min,
        max=h.max,
        num=h.num,
        sum=h.sum,
        sum_squares=h.sum_squares,
        bucket_limits=tuple(h.bucket_limit),
        bucket_counts=tuple(h.bucket),
    )


def tf2_histogram(tag: str, arr: npt.NDArray[Any], base: dict[str, Any]) -> Histogram:
    """A TF2 ``histograms`` tensor (rows of left edge, right edge, count) as a histogram event.

    Sum and sum of squares are estimated from bucket centres; an empty tensor has NaN bounds.
    """
    arr = np.asarray(arr, dtype=np.float64).reshape(-1, 3)
    counts = arr[:, 2]
    num = float(counts.sum())
    centers = (arr[:, 0] + arr[:, 1]) / 2
    return Histogram(
        **base,
        tag=tag,
        min=float(arr[0, 0]) if len(arr) else math.nan,
        max=float(arr[-1, 1]) if len(arr) else math.nan,
        num=num,
        sum=float((centers * counts).sum()),
        sum_squares=float((centers * centers * counts).sum()),
        bucket_limits=tuple(float(x) for x in arr[:, 1]),
        bucket_counts=tuple(float(x) for x in counts),
    )


def decode_tf2(
    plugin: str, tag: str, tensor: tensor_pb2.TensorProto, base: dict[str, Any]
) -> list[Event]:
    """A TF2 tensor summary of the ``scalars`` or ``histograms`` plugin as events.

    Args:
        plugin: The plugin named in the tag's metadata; others give no events.
        tag: The value's tag.
        tensor: Its tensor.
        base: ``step``, ``wall_time``, ``run`` and ``rank`` of the events.
    """
    if plugin == "scalars":
        arr = tensor_to_array(tensor)
        return [Scalar(**base, tag=tag, value=float(arr.reshape(-1)[0]))]
    if plugin == "histograms":
        return [tf2_histogram(tag, tensor_to_array(tensor), base)]
    return []
