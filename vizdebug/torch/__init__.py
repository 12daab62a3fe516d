"""The PyTorch adapter: ``watch = vizdebug.watch(model, optimizer)``.

See :func:`watch` for the options and :mod:`vizdebug.torch.watcher` for the hooks it installs.
"""

from __future__ import annotations

from .hooks import AlreadyWatchedError
from .sentinel import Finding, NonFiniteError, NonFiniteWarning
from .watcher import DEFAULT_EVERY, DEFAULT_FIRST, WHAT, Watch, watch

__all__ = [
    "DEFAULT_EVERY",
    "DEFAULT_FIRST",
    "WHAT",
    "AlreadyWatchedError",
    "Finding",
    "NonFiniteError",
    "NonFiniteWarning",
    "Watch",
    "watch",
]
