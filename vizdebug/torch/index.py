"""What a watch knows of its model: the modules, the parameters, their owners and selection."""

from __future__ import annotations

import fnmatch

import torch

from .hooks import Slot
from .sentinel import Site

__all__ = ["ModelIndex"]


class ModelIndex:
    """The modules and parameters of a model, in ``named_modules()`` / ``named_parameters()`` order.

    Args:
        model: The watched model.
        include: Globs of module names to record (empty: all).
        exclude: Globs of module names not to record.

    Attributes:
        modules: The modules; ``modules[0]`` is the root.
        slots: One :class:`~vizdebug.torch.hooks.Slot` per module.
        params: ``(name, parameter, selected)``; a parameter is selected when its own name or
            its owning module's name is.
        grad_sites: The sentinel's site of each parameter's gradient.
        weight_sites: The sentinel's site of each parameter's value.
    """

    def __init__(
        self, model: torch.nn.Module, include: tuple[str, ...], exclude: tuple[str, ...]
    ) -> None:
        self.include, self.exclude = include, exclude
        named = list(model.named_modules())
        self.modules = [m for _, m in named]
        self.slots = [Slot(i, name, m, self.selected(name)) for i, (name, m) in enumerate(named)]
        types = {name: type(m).__name__ for name, m in named}
        self.params: list[tuple[str, torch.nn.Parameter, bool]] = []
        self.grad_sites: list[tuple[Site, torch.nn.Parameter]] = []
        self.weight_sites: list[tuple[Site, torch.nn.Parameter]] = []
        for name, p in model.named_parameters():
            owner = name.rpartition(".")[0]
            kind = types[owner]
            self.params.append((name, p, self.selected(name) or self.selected(owner)))
            self.grad_sites.append((Site(owner, kind, "backward", "grad", param=name), p))
            self.weight_sites.append((Site(owner, kind, "forward", "weight", param=name), p))

    def selected(self, name: str) -> bool:
        """Whether the module or parameter ``name`` passes the include and exclude globs."""
        if self.include and not any(fnmatch.fnmatchcase(name, g) for g in self.include):
            return False
        return not any(fnmatch.fnmatchcase(name, g) for g in self.exclude)
