"""Hook plumbing: finding the tensors in what a module returns, and one watch per module."""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Iterator
from typing import Any

import torch

from ..errors import VizdebugError

__all__ = [
    "AlreadyWatchedError",
    "Slot",
    "claim",
    "dist_rank",
    "hang",
    "iter_tensors",
    "release",
]

_MAX_DEPTH = 4

#: Modules currently watched, each mapped to an id of the watch that owns it.
_OWNERS: weakref.WeakKeyDictionary[torch.nn.Module, int] = weakref.WeakKeyDictionary()


class AlreadyWatchedError(VizdebugError, ValueError):
    """A module is already watched by another, still open, watch."""


def claim(model: torch.nn.Module, owner: int) -> None:
    """Mark every module of ``model`` as watched by ``owner``.

    Raises:
        AlreadyWatchedError: Some module is already watched; nothing is claimed then.
    """
    for name, module in model.named_modules():
        other = _OWNERS.get(module)
        if other is not None and other != owner:
            where = f"its submodule {name!r}" if name else "it"
            raise AlreadyWatchedError(
                f"{type(model).__name__} is already watched ({where} has hooks from an open "
                "vizdebug.watch); call close() on the first watch (or use it as a context "
                "manager) before watching the model again"
            )
    for module in model.modules():
        _OWNERS[module] = owner


def release(model: torch.nn.Module, owner: int) -> None:
    """Undo :func:`claim`."""
    for module in model.modules():
        if _OWNERS.get(module) == owner:
            del _OWNERS[module]


def iter_tensors(obj: Any, path: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Yield ``(path, leaf)`` for every leaf of a module's output.

    Tensors, tuples, lists, dicts and dataclasses are walked (namedtuples are tuples); None is
    skipped; anything else is yielded as a leaf so the caller can say why it was skipped. Paths
    look like ``"[0]"``, ``"[1][0]"`` or ``"[logits]"``; a bare tensor has the path ``""``.
    """
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif obj is None:
        return
    elif depth >= _MAX_DEPTH:
        yield path, obj
    elif isinstance(obj, tuple | list):
        for i, item in enumerate(obj):
            yield from iter_tensors(item, f"{path}[{i}]", depth + 1)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from iter_tensors(item, f"{path}[{key}]", depth + 1)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from iter_tensors(getattr(obj, f.name), f"{path}[{f.name}]", depth + 1)
    else:
        yield path, obj


class Slot:
    """A watched module: its index in ``named_modules()``, name, type and whether selected."""

    __slots__ = ("index", "name", "selected", "type")

    def __init__(self, index: int, name: str, module: torch.nn.Module, selected: bool) -> None:
        self.index = index
        self.name = name
        self.type = type(module).__name__
        self.selected = selected


def dist_rank() -> tuple[int | None, int | None]:
    """``(rank, world size)`` from torch.distributed, or ``(None, None)``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None, None


def hang(t: torch.Tensor, hook: Any, *args: Any) -> None:
    """Call ``hook(*args, nr, grads)`` when the gradient of ``t`` is computed: it is
    ``grads[nr]`` (None when no gradient reached ``t``; the hook checks).

    A pre-hook on the node that made ``t`` is a third cheaper to register than a tensor
    hook and needs no handle: it dies with the step's graph, and hooks left on a graph at
    close() return at once. It is one partial of ``hook``, not a closure calling it: a
    Python frame less per gradient (a hundred a step on the Transformer benchmark).
    """
    node = t.grad_fn
    if node is None:
        untyped: Any = t  # a leaf (a module returning a parameter): torch leaves it untyped
        untyped.register_hook(lambda grad: hook(*args, 0, (grad,)))
        return
    node.register_prehook(functools.partial(hook, *args, t.output_nr))
