"""True statistics under in-place operations: a recorded output is read before it is overwritten.

On the models people train, most interesting activations are overwritten in place soon after
their module returns them: BatchNorm's output by ``ReLU(inplace=True)``, a residual branch by
``out += identity``, a flattened view by ``Dropout(inplace=True)``, a block's output by
``F.relu(x, inplace=True)`` in its parent's forward. The statistics worker reads outputs later,
on another thread, and the sentinel searches the flight recorder's references at the end of the
step, so both would see the overwritten values (a version counter only says that they changed).

:class:`WriteGuard` is a :class:`~torch.overrides.TorchFunctionMode` entered for the forward
pass of a hooked step only (never on other steps, never under ``torch.compile``). Every torch
call passes through it; one that writes a tensor (a name ending in ``_``, an in-place dunder,
``__setitem__``, ``out=`` or ``inplace=True``) is checked against the storages of the outputs
recorded so far, and a hit is copied once, before the write, and the copy handed to whoever
holds the output: the statistics worker's still-queued entry (an entry being read is waited
for; one already read needs nothing) and the flight recorder's call. An output that is never
written costs nothing more than a storage lookup; the copy is made only where needed.

What it cannot see: writes done inside C++ code that does not pass through Python's torch API
(a TorchScript module, a custom C++ op); the version counter still catches those, and the
statistics row is then replaced by a note.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from .recorder import Call

__all__ = ["WriteGuard"]

#: In-place operators that do not end in a single underscore.
_WRITING_DUNDERS = frozenset(
    {
        "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__imod__",
        "__ipow__", "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__",
        "__imatmul__", "__setitem__",
    }
)  # fmt: skip


def written(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    """The tensor a torch call writes in place, or None."""
    if kwargs:
        out = kwargs.get("out")
        if isinstance(out, torch.Tensor):
            return out
        if kwargs.get("inplace") is True:
            target = args[0] if args else kwargs.get("input")
            return target if isinstance(target, torch.Tensor) else None
    name = getattr(func, "__name__", "")
    if (name[-1:] == "_" and name[-2:] != "__") or name in _WRITING_DUNDERS:
        target = args[0] if args else None
        return target if isinstance(target, torch.Tensor) else None
    return None


def storage_key(t: torch.Tensor) -> int | None:
    """The address of ``t``'s storage (views share it), or None for storage-less tensors."""
    try:
        return int(t.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError, AttributeError):  # sparse, meta, fake tensors
        return None


class WriteGuard(TorchFunctionMode):
    """Copies a recorded output just before an in-place op writes it (see the module docstring).

    Args:
        swap: Hands an entry of the statistics worker the copy (the worker decides whether it
            still needs it); called with ``(entry, copy)``.
    """

    def __init__(self, swap: Callable[[Any, torch.Tensor], None]) -> None:
        super().__init__()
        self._swap = swap
        #: storage address -> what holds an output living in it: (tensor, entry, call, k)
        self._held: dict[int, list[tuple[torch.Tensor, Any, Call | None, int]]] = {}
        self.active = 0
        #: Outputs copied before a write (for measurement and tests).
        self.copies = 0

    def hold(self, t: torch.Tensor, entry: Any, call: Call | None, k: int) -> None:
        """Protect output ``t`` (its worker ``entry`` and/or recorder ``call``'s k-th output)."""
        key = storage_key(t)
        if key is not None:
            self._held.setdefault(key, []).append((t, entry, call, k))

    def reset(self) -> None:
        """Forget the step's outputs."""
        self._held = {}

    def enter(self) -> None:
        """Start guarding (the root module's forward pre-hook); nests with itself."""
        if not self.active:
            self._push()
        self.active += 1

    def leave(self) -> None:
        """Stop guarding (the root module's forward hook, also when the forward raised)."""
        if self.active:
            self.active -= 1
            if not self.active:
                self._pop()

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Run code of vizdebug's own (a tracer) with the guard's mode popped, if it is on."""
        if not self.active:
            yield
            return
        self._pop()
        try:
            yield
        finally:
            self._push()

    def _push(self) -> None:
        self.__enter__()  # type: ignore[no-untyped-call]

    def _pop(self) -> None:
        self.__exit__(None, None, None)  # type: ignore[no-untyped-call]

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if self._held:
            target = written(func, args, kwargs)
            if target is not None:
                self._before_write(target)
        return func(*args, **kwargs)

    def _before_write(self, target: torch.Tensor) -> None:
        key = storage_key(target)
        holders = self._held.pop(key, None) if key is not None else None
        if not holders:
            return
        copies: dict[int, torch.Tensor] = {}
        for t, entry, call, k in holders:
            copy = copies.get(id(t))
            if copy is None:
                with torch.no_grad():
                    copy = copies[id(t)] = t.detach().clone()
                self.copies += 1
            if entry is not None:
                self._swap(entry, copy)
            if call is not None:
                call.replace(k, copy)
