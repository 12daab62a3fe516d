"""A watch on a ``torch.compile``d model: what runs where, and how dynamo is kept out of it.

``torch.compile`` traces a module's forward, hooks included, into graphs guarded on the Python
state they read. vizdebug's hooks read and change Python state every call (counters, the step,
the flight recorder), so traced as they were they became guards (``self._calls[3] == 0``) that
failed every step: a recompile per step until dynamo's recompile limit, then eager mode.

So on a compiled model:

* the root module's hooks are :func:`eager` functions: dynamo does not trace them; it ends the
  graph before each and calls it as plain Python (at the start and the end of the forward, so
  the model's own graph is the one it compiles without the watch, and the numbers are too);
* a first root pre-hook, :func:`probe`, is traced: ``torch.compiler.is_compiling()`` is true
  only while dynamo traces it, and it then calls the watch's eager ``saw`` once a call, which
  switches the watch to what it records on compiled models;
* per-module hooks are never added (adding and removing them at step boundaries is what made
  dynamo recompile): the weights, gradients and updates of every parameter are recorded on
  scheduled steps (the optimizer's hooks run outside the compiled graph), and the sentinel
  checks the root outputs and the parameter gradients every step; a flagged step is replayed
  eagerly on the original module with every module hooked, which names the module.

``watch(torch.compile(model))`` watches the original module (``_orig_mod``) the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch.compiler import is_compiling

try:
    from torch._C._dynamo.eval_frame import set_eval_frame
except ImportError:  # a build without dynamo: nothing ever compiles
    set_eval_frame = None  # type: ignore[assignment]

__all__ = ["compiled_original", "eager", "probe"]

F = TypeVar("F", bound=Callable[..., Any])


def eager(fn: F) -> F:
    """``fn`` as dynamo's ``disable`` makes it, without importing dynamo (4 s here): a graph
    break where a compiled frame calls it, and no frame of its own compiled."""
    if set_eval_frame is None:
        return fn
    reset = set_eval_frame

    def call(*args: Any, **kwargs: Any) -> Any:
        prior = reset(None)
        try:
            return fn(*args, **kwargs)
        finally:
            reset(prior)

    marked: Any = call
    marked._torchdynamo_disable = True
    marked._torchdynamo_disable_msg = "vizdebug's hooks run outside the compiled graph"
    marked._torchdynamo_orig_callable = fn
    return marked  # type: ignore[no-any-return]


def probe(saw: Callable[[], None], module: Any, args: Any, kwargs: Any) -> None:
    """A root pre-hook dynamo traces: calls ``saw`` (an :func:`eager` function) when compiled."""
    if is_compiling():
        saw()


def compiled_original(model: torch.nn.Module) -> torch.nn.Module | None:
    """The module a ``torch.compile`` wrapper (``OptimizedModule``) compiles, else None."""
    inner = getattr(model, "_orig_mod", None)
    if isinstance(inner, torch.nn.Module) and type(model).__name__ == "OptimizedModule":
        return inner
    return None
