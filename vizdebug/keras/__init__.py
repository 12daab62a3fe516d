"""The Keras adapter: ``model.fit(..., callbacks=[vizdebug.keras.Callback()])``.

See :class:`Callback` for the options, :mod:`vizdebug.keras.callback` for how it hooks into
``fit``, and :func:`vizdebug.tf.watch` for custom ``GradientTape`` loops.

:data:`Callback` and :data:`Finding` follow Keras's backend, chosen when first used: on
TensorFlow they are :class:`vizdebug.keras.callback.Callback` and
:class:`vizdebug.keras.engine.Finding`; on the torch backend (``KERAS_BACKEND=torch``)
:class:`vizdebug.keras.torch_backend.TorchCallback` and :class:`vizdebug.torch.Finding`,
with no TensorFlow import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..adapters import DEFAULT_EVERY, DEFAULT_FIRST, WHAT, NonFiniteError, NonFiniteWarning

if TYPE_CHECKING:
    from .callback import Callback
    from .engine import Finding

__all__ = [
    "DEFAULT_EVERY",
    "DEFAULT_FIRST",
    "WHAT",
    "Callback",
    "Finding",
    "NonFiniteError",
    "NonFiniteWarning",
]


def __getattr__(name: str) -> Any:
    # Lazy: the TensorFlow backend's modules import TensorFlow, which a torch-backend user
    # may not even have installed.
    if name not in ("Callback", "Finding"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import keras

    if keras.backend.backend() == "torch":
        from ..torch.sentinel import Finding as TorchFinding
        from . import torch_backend

        found: Any = torch_backend.TorchCallback if name == "Callback" else TorchFinding
    else:
        from . import callback, engine

        found = callback.Callback if name == "Callback" else engine.Finding
    globals()[name] = found
    return found
