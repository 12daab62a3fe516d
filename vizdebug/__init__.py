"""vizdebug: see and debug deep-learning training in PyTorch and TensorFlow/Keras.

``import vizdebug`` is cheap: it imports neither torch nor TensorFlow. The adapters load their
framework when first used::

    watch = vizdebug.watch(model, optimizer)          # PyTorch
    model.fit(..., callbacks=[vizdebug.keras.Callback()])   # Keras
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .errors import (
    CorruptRecordError,
    RunNotFoundError,
    SinkNotFoundError,
    VizdebugError,
    WriterClosedError,
)
from .ui.safe import install_log_filter as _install_log_filter

# Names in vizdebug's log messages come from user code: never let them drive a terminal.
_install_log_filter()

if TYPE_CHECKING:
    from . import events, runs, stats
    from .torch import Watch, watch
    from .writer import Writer

__all__ = [
    "CorruptRecordError",
    "RunNotFoundError",
    "SinkNotFoundError",
    "VizdebugError",
    "Watch",
    "Writer",
    "WriterClosedError",
    "__version__",
    "events",
    "keras",
    "runs",
    "stats",
    "tf",
    "watch",
]


def __getattr__(name: str) -> Any:
    # Lazy: the writer pulls in numpy and TensorBoard's protos; adapters pull in frameworks.
    if name == "Writer":
        from .writer import Writer

        return Writer
    if name in ("watch", "Watch"):
        from . import torch as _torch_adapter

        return getattr(_torch_adapter, name)
    if name in ("keras", "tf", "stats", "runs", "events"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'vizdebug' has no attribute {name!r}")
