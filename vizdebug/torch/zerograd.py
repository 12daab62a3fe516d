"""``optimizer.zero_grad(set_to_none=False)`` waits for the statistics worker's read.

Parameter gradients over :data:`~vizdebug.torch.flat.FLAT_GRAD_BYTES` a group go to the worker
by reference; ``zero_grad(set_to_none=False)`` zeroes them in place, possibly before the worker
read them. The watch wraps the optimizer's ``zero_grad`` for as long as it is open.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ZeroGradGuard"]


class ZeroGradGuard:
    """``optimizer.zero_grad(set_to_none=False)`` zeroes the gradients in place, which the
    statistics worker may not have read yet (it reads them by reference, see .flat): it waits
    for the worker first. A handle: ``remove()`` restores the optimizer's own method."""

    def __init__(self, optimizer: torch.optim.Optimizer, wait: Any) -> None:
        self.optimizer = optimizer
        original = optimizer.zero_grad

        def zero_grad(set_to_none: bool = True) -> None:
            if not set_to_none:
                wait()
            original(set_to_none=set_to_none)

        zero_grad.__doc__ = original.__doc__
        self.installed = zero_grad
        optimizer.zero_grad = zero_grad  # type: ignore[method-assign]

    def remove(self) -> None:
        """Restore the optimizer's own ``zero_grad``."""
        if self.optimizer.__dict__.get("zero_grad") is self.installed:
            del self.optimizer.zero_grad
