"""The Keras adapter: ``model.fit(..., callbacks=[vizdebug.keras.Callback()])``.

See :class:`Callback` for the options, :mod:`vizdebug.keras.callback` for how it hooks into
``fit``, and :func:`vizdebug.tf.watch` for custom ``GradientTape`` loops.
"""

from __future__ import annotations

from .callback import Callback
from .engine import DEFAULT_EVERY, DEFAULT_FIRST, WHAT, Finding, NonFiniteError, NonFiniteWarning

__all__ = [
    "DEFAULT_EVERY",
    "DEFAULT_FIRST",
    "WHAT",
    "Callback",
    "Finding",
    "NonFiniteError",
    "NonFiniteWarning",
]
