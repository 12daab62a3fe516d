"""Turn a flight-recorder snapshot into stepping points: one per module call, in forward order.

The flight recorder names tensors ``<module>/input<k>`` and ``<module>/output<k>`` (a repeated
call is ``<module>#<call>``, the root module ``(root)``). A safetensors file keeps its names
sorted, so the order comes from the snapshot's event (the order the recorder captured them:
the order modules returned in the forward pass), else from the model structure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["ROOT", "SnapPoint", "snapshot_points", "split_name"]

#: How the flight recorder names the root module.
ROOT = "(root)"


@dataclass(frozen=True)
class SnapPoint:
    """One module call in a snapshot.

    Attributes:
        module: Qualified module name ("" for the root).
        call: Index of the call within the step.
        tensors: Short name ("input0", "output0", ...) to the full name in the file.
    """

    module: str
    call: int
    tensors: Mapping[str, str]


def split_name(name: str) -> tuple[str, int, str]:
    """``"enc.fc#2/output0"`` → ``("enc.fc", 2, "output0")``; a name without "/" is its own."""
    base, sep, short = name.rpartition("/")
    if not sep:
        return name, 0, name
    module, hsep, call = base.rpartition("#")
    if hsep and call.isdigit():
        base = module
        number = int(call)
    else:
        number = 0
    return ("" if base == ROOT else base), number, short


def snapshot_points(
    names: Sequence[str], *, captured: Sequence[str] = (), structure: Sequence[str] = ()
) -> list[SnapPoint]:
    """Group a snapshot's tensor names by module call, in forward order.

    Args:
        names: The tensors in the file.
        captured: The names in capture order (``SnapshotRef.tensors``); used when it holds
            exactly ``names``.
        structure: Module names in model-structure order, the fallback order.

    Returns:
        One point per module call, each with its tensors (inputs before outputs).
    """
    if captured and set(captured) == set(names):
        ordered = list(captured)
    else:
        rank = {m: i for i, m in enumerate(structure)}
        parsed = {n: split_name(n) for n in names}
        ordered = sorted(
            names, key=lambda n: (rank.get(parsed[n][0], len(rank)), parsed[n][1], names.index(n))
        )
    groups: dict[tuple[str, int], dict[str, str]] = {}
    for name in ordered:
        module, call, short = split_name(name)
        groups.setdefault((module, call), {})[short] = name
    points = []
    for (module, call), tensors in groups.items():
        keys = sorted(tensors, key=lambda k: (not k.startswith("input"), k))
        points.append(SnapPoint(module, call, {k: tensors[k] for k in keys}))
    return points
