"""Placing a one-shot forward fault from the step's own autograd graph.

A step without module hooks keeps no module's tensors; when its replay does not reproduce a
non-finite root output (a one-shot fault: Python-side state the replay cannot restore), every
gradient behind the non-finite loss is non-finite too and says nothing of where the value was
made. The step's autograd graph does: until the backward pass runs a node, the node holds the
tensors it saved in the forward pass, many of them the inputs and outputs of the model's ops,
and the parameters hang off it as ``AccumulateGrad`` leaves. So, when the gradient first
reaches a non-finite root output (the backward pass has not freed anything yet), the graph is
walked once:

* the *first* non-finite node: one holding a non-finite saved value (tensor or scalar) no node
  between it and the inputs holds. A non-finite result or scalar argument means the op made
  it: an op using a module's parameters then names that module. A non-finite input means it
  was made further up, by an op that keeps no result;
* otherwise the nearest ops upstream (towards the inputs) and downstream (towards the output)
  that use parameters name a module each: the value was made in the upstream module (its
  result is not kept) or in a leaf module defined between the two (definition order, the
  order modules usually run in); modules that cannot make a non-finite value from finite
  inputs (ReLU, dropout, pooling...) are left out, and the placement names the candidate
  when one is left.

This is approximate, and the finding says so: ops without parameters are placed by definition
order, and an op that saves nothing leaves its value to its consumer. It costs nothing on a
healthy step: the root outputs are checked there anyway (moved from the step's end to the
start of its backward pass on CPU, where the check is a scan of their memory).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Placement", "place"]

#: Nodes walked at most (a graph larger than this is placed from what was walked).
MAX_NODES = 20000

#: Leaf module types that cannot make a non-finite value out of finite inputs: never named as
#: the candidate that made one.
PASSIVE_MODULES = frozenset(
    {
        "ReLU", "ReLU6", "LeakyReLU", "ELU", "GELU", "GELUActivation", "SiLU", "Sigmoid",
        "Tanh", "Hardswish", "Hardsigmoid", "Hardtanh", "Dropout", "Dropout1d", "Dropout2d",
        "Identity", "Flatten", "Unflatten", "MaxPool1d", "MaxPool2d", "MaxPool3d",
        "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "StochasticDepth",
    }
)  # fmt: skip

#: Ops (backward node names without ``Backward<n>``) that cannot make a non-finite value out
#: of finite inputs: a non-finite result they keep was given to them.
PASSIVE_OPS = frozenset(
    {
        "Relu", "Threshold", "LeakyRelu", "Elu", "Gelu", "Silu", "Sigmoid", "Tanh",
        "Hardswish", "Hardsigmoid", "Hardtanh", "NativeDropout", "Clone", "View",
        "UnsafeView", "Reshape", "Permute", "Transpose", "T", "Expand", "Squeeze",
        "Unsqueeze", "Select", "Slice", "Cat", "Stack", "MaxPool2DWithIndices",
        "AvgPool2D", "AdaptiveAvgPool2D", "Abs", "Neg",
    }
)  # fmt: skip

Module = tuple[str, str]


def _op(node: Any) -> str:
    name: str = node.name()
    return name.rpartition("::")[2].split("Backward")[0]


@dataclass(frozen=True)
class Placement:
    """Where the graph walk places a forward fault.

    Attributes:
        module: The candidate module's name ("" when none stands out).
        module_type: Its class name.
        text: What the walk saw, for the finding's message.
    """

    module: str
    module_type: str
    text: str


def _bad(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        if not value.dtype.is_floating_point or value.numel() == 0 or value.is_meta:
            return False
        return not bool(torch.isfinite(value).all())
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_bad(v) for v in value)
    return False


def _saved_bad(node: Any) -> str:
    """How ``node`` holds a non-finite saved value: "made" (its result, or a scalar argument:
    the op made it), "input" (a tensor it was given: made further up) or "" (none)."""
    found = ""
    for attr in dir(node):
        if not attr.startswith("_saved_"):
            continue
        try:
            value = getattr(node, attr)
        except Exception:  # freed, or a type the binding cannot return
            continue
        if _bad(value):
            # a Python number argument (``x * math.nan``) is kept as a 0-d tensor
            scalar = not isinstance(value, (torch.Tensor, list, tuple)) or (
                isinstance(value, torch.Tensor) and value.dim() == 0 and not value.requires_grad
            )
            if (attr == "_saved_result" and _op(node) not in PASSIVE_OPS) or scalar:
                return "made"
            found = "input"
    return found


class _Graph:
    """The nodes of one autograd graph, with both directions of its edges."""

    def __init__(self, start: Any, owners: dict[int, Module]) -> None:
        self.owners = owners
        self.children: dict[int, list[Any]] = {}  # towards the inputs
        self.parents: dict[int, list[Any]] = {}  # towards the output
        self.nodes: dict[int, Any] = {id(start): start}
        todo = [start]
        while todo and len(self.nodes) < MAX_NODES:
            node = todo.pop()
            kids = [n for n, _ in node.next_functions if n is not None]
            self.children[id(node)] = kids
            for kid in kids:
                self.parents.setdefault(id(kid), []).append(node)
                if id(kid) not in self.nodes:
                    self.nodes[id(kid)] = kid
                    todo.append(kid)

    def first(self, bad: set[int]) -> int:
        """A bad node no bad node lies above (between it and the inputs)."""
        above: dict[int, bool] = {}
        for key in bad:
            stack = [(key, False)]
            while stack:  # iterative: graphs are deep
                k, expanded = stack.pop()
                if k in above:
                    continue
                kids = self.children.get(k, [])
                if not expanded:
                    stack.append((k, True))
                    stack += [(id(c), False) for c in kids if id(c) not in above]
                else:
                    above[k] = any(id(c) in bad or above.get(id(c), False) for c in kids)
            if not above[key]:
                return key
        return next(iter(bad))

    def own(self, node: Any) -> list[Module]:
        """Modules whose parameters ``node`` uses (directly, or through a view or transpose)."""
        found = []
        for kid in self.children.get(id(node), []):
            chain = kid
            for _ in range(3):
                variable = getattr(chain, "variable", None)
                if variable is not None:
                    if id(variable) in self.owners:
                        found.append(self.owners[id(variable)])
                    break
                nxt = self.children.get(id(chain), [])
                if len(nxt) != 1:
                    break
                chain = nxt[0]
        return found

    def nearest(self, node: Any, upward: bool) -> list[Module]:
        """The modules of the first ops using parameters on each path from ``node`` towards
        the inputs (``upward``) or the output."""
        links = self.children if upward else self.parents
        seen = {id(node)}
        frontier = [node]
        found: list[Module] = []
        while frontier:
            nxt = []
            for m in frontier:
                mods = self.own(m) if m is not node else []
                if mods:
                    found += mods
                    continue  # this path's first: not beyond it
                for k in links.get(id(m), []):
                    if id(k) not in seen and getattr(k, "variable", None) is None:
                        seen.add(id(k))
                        nxt.append(k)
            frontier = nxt
        return found

    def above(self, node: Any) -> set[Module]:
        """The modules whose parameters ops between ``node`` and the inputs use."""
        seen = {id(node)}
        todo = [node]
        mods: set[Module] = set()
        while todo:
            m = todo.pop()
            mods.update(self.own(m))
            for k in self.children.get(id(m), []):
                if id(k) not in seen:
                    seen.add(id(k))
                    todo.append(k)
        return mods


def place(
    root: torch.Tensor, owners: dict[int, Module], leaves: Sequence[Module]
) -> Placement | None:
    """Walk ``root``'s autograd graph and place the first non-finite value.

    Args:
        root: A root output holding a non-finite value, its graph intact.
        owners: ``id(parameter) -> (module name, module type)``.
        leaves: ``(name, type)`` of the model's leaf modules, in definition order.

    Returns:
        The placement, or None when no node holds a non-finite value.
    """
    if root.grad_fn is None:
        return None
    graph = _Graph(root.grad_fn, owners)
    how = {key: _saved_bad(node) for key, node in graph.nodes.items()}
    bad = {key for key, h in how.items() if h}
    if not bad:
        return None
    key = graph.first(bad)
    node, made = graph.nodes[key], how[key] == "made"
    own = graph.own(node)
    if made and own:  # the op that made it uses a module's parameters: that module
        return Placement(*own[0], f"it was made by {node.name()}, which uses its parameters")
    # made here by a parameter-free op, or given to ``node``: made after the nearest module
    # upstream ran (by it, perhaps: its result is not kept) and before ``node``
    order = {name: i for i, (name, _) in enumerate(leaves)}
    ups = graph.nearest(node, upward=True)
    downs = own or graph.nearest(node, upward=False)
    up = max(ups, key=lambda m: order.get(m[0], -1)) if ups else None
    down = min(downs, key=lambda m: order.get(m[0], len(leaves))) if downs else None
    lo = order.get(up[0], -1) if up else -1
    hi = order.get(down[0], len(leaves)) if down else len(leaves)
    with_params = set(graph.owners.values())
    feeding = graph.above(node)  # a module with parameters is a candidate only if it feeds node
    between = [c for c in leaves[lo + 1 : hi] if c not in with_params or c in feeding]
    candidates = ([] if made or up is None else [up]) + between
    active = [c for c in candidates if c[1] not in PASSIVE_MODULES]
    text = f"in the step's autograd graph it was first {'made by' if made else 'given to'} "
    text += node.name()
    if up is not None:
        text += f", after module {up[0]!r} ({up[1]}) ran"
    if down is not None:
        text += f", before module {down[0]!r} ({down[1]}) used it"
    if len(active) != 1 and candidates:
        more = " ..." if len(candidates) > 6 else ""
        text += "; candidates: " + ", ".join(repr(n) for n, _ in candidates[:6]) + more
    if len(active) == 1:
        return Placement(*active[0], text)
    return Placement("", "", text)
