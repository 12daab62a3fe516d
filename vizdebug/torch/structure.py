"""The model-structure event: the module tree with parameter counts and output shapes."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..events import ModuleInfo

__all__ = ["module_infos"]


def module_infos(
    model: torch.nn.Module, output_shapes: Mapping[str, tuple[tuple[int, ...], ...]]
) -> list[ModuleInfo]:
    """One :class:`~vizdebug.events.ModuleInfo` per module, in ``named_modules()`` order.

    Args:
        model: The root module.
        output_shapes: Shapes of each module's outputs on its first call (by qualified name).

    Returns:
        The modules; ``params`` counts parameters a module owns directly.
    """
    infos = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        infos.append(
            ModuleInfo(
                name=name,
                type=type(module).__name__,
                params=sum(p.numel() for p in own),
                trainable=sum(p.numel() for p in own if p.requires_grad),
                output_shapes=tuple(output_shapes.get(name, ())),
            )
        )
    return infos
