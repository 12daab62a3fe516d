"""The ``tf.debugging.enable_check_numerics`` bridge: its error, turned into an anomaly.

With check numerics on, TensorFlow checks the output of every op and raises
``tf.errors.InvalidArgumentError`` at the first one that produced a NaN or an Inf. The message
names the op type and, in graph mode, the node (``"sequential/dense_1/Log/CheckNumericsV2"``),
whose name scopes are the layer names (TensorFlow may add ``_1`` suffixes to keep scopes
unique). Run eagerly, the probe knows which layer's ``call`` raised.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .engine import Finding
from .plan import Site
from .probe import Slot

__all__ = ["finding_from_error", "is_check_numerics_error", "layer_of_node"]

_NODE = re.compile(r"Detected at node '?([^'\s]+)'?")
_OP = re.compile(r'in output \d+ of (?:graph op|eagerly-executing op) "([^"]+)"')
_COUNT = re.compile(r"# of ([+-]?)(NaN|Inf) elements: (\d+)")
_SUFFIX = re.compile(r"_\d+$")


def is_check_numerics_error(exc: BaseException) -> bool:
    """Whether an ``InvalidArgumentError`` comes from check numerics."""
    text = str(exc)
    return "CheckNumerics" in text or "Detected Infinity or NaN" in text


def layer_of_node(node: str, slots: Sequence[Slot]) -> Slot | None:
    """The innermost layer whose name is a name scope of ``node`` (None if none matches)."""
    by_name: dict[str, Slot] = {}
    for slot in slots[1:]:
        by_name.setdefault(slot.layer.name, slot)
    for part in reversed(node.split("/")[:-1]):
        for candidate in (part, _SUFFIX.sub("", part)):
            if candidate in by_name:
                return by_name[candidate]
    return None


def finding_from_error(
    exc: BaseException, step: int, slots: Sequence[Slot], raised_in: Slot | None
) -> Finding:
    """Describe a check-numerics error as a :class:`Finding`.

    Args:
        exc: The ``InvalidArgumentError``.
        step: The step it happened at.
        slots: The model's layers.
        raised_in: The layer whose ``call`` raised it (eager execution), if known.
    """
    text = str(exc)
    node_m = _NODE.search(text)
    node = node_m.group(1) if node_m else ""
    op_m = _OP.search(text)
    op = op_m.group(1) if op_m else (node.split("/")[-2] if node.count("/") >= 1 else "")
    slot = raised_in or (layer_of_node(node, slots) if node else None)
    backward = "gradient" in node.lower()
    nan = pos = neg = 0
    for sign, what, n in _COUNT.findall(text):
        if what == "NaN":
            nan += int(n)
        elif sign == "-":
            neg += int(n)
        else:
            pos += int(n)
    kind = "nan" if nan or not (pos or neg) else "inf"
    where = f"in layer {slot.name!r} ({slot.type})" if slot else "(no layer could be mapped)"
    node_text = f" at node {node!r}" if node else ""
    message = (
        f"step {step}: tf.debugging check numerics stopped at op {op or '?'!r}{node_text} "
        f"{where}, {'backward' if backward else 'forward'} pass: it produced {kind}."
    )
    site = Site(
        slot.name if slot else "",
        slot.type if slot else "",
        "backward" if backward else "forward",
        "grad_output" if backward else "output",
    )
    return Finding(kind, site, site.role, message, nan, pos, neg, step, op=op or node)


def first_line(exc: Any) -> str:
    """The first non-empty line of an exception's message."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
