"""TensorFlow helpers: :func:`watch` for custom ``GradientTape`` loops, statistics as TF ops.

The Keras ``fit`` integration is :class:`vizdebug.keras.Callback`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tape import TapeWatch, watch

__all__ = ["TapeWatch", "watch"]


def __getattr__(name: str) -> Any:
    # Lazy, so that vizdebug.keras can use vizdebug.tf.ops without a circular import.
    if name in ("watch", "TapeWatch"):
        import importlib

        return getattr(importlib.import_module(f"{__name__}.tape"), name)
    raise AttributeError(f"module 'vizdebug.tf' has no attribute {name!r}")
