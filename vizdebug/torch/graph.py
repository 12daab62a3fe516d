"""The model graph for TensorBoard's Graphs dashboard, traced once with ``torch.jit.trace``.

Tracing runs the model one more time on the first step's inputs. So that this changes nothing
about training it runs in eval mode (no dropout, no batch-norm statistics update), under
``torch.no_grad()``, with the RNG state saved and restored, and with vizdebug's own hooks
silenced. Models that cannot be traced (data-dependent control flow, dict outputs, ...) are
skipped with a note saying why. The ``GraphDef`` is built here from the traced graph with
TensorBoard's protos (``torch.utils.tensorboard``'s own converter imports TensorFlow when it is
installed, which costs seconds and hundreds of MB).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

__all__ = ["trace_graph"]


def _graph_def(traced: Any) -> bytes:
    from tensorboard.compat.proto.graph_pb2 import GraphDef
    from tensorboard.compat.proto.node_def_pb2 import NodeDef
    from tensorboard.compat.proto.versions_pb2 import VersionDef

    graph = traced.inlined_graph
    names: dict[str, str] = {}
    nodes: list[Any] = []

    def scoped(scope: str, value: str) -> str:
        prefix = scope.replace("__module.", "").replace(".", "/") if scope else ""
        return f"{prefix}/{value}" if prefix else value

    for i, inp in enumerate(list(graph.inputs())[1:]):  # [0] is the module itself
        name = f"input/{inp.debugName() or i}"
        names[inp.debugName()] = name
        nodes.append(NodeDef(name=name, op="IO Node"))
    for node in graph.nodes():
        kind = node.kind()
        if kind in ("prim::Constant", "prim::GetAttr", "prim::ListConstruct"):
            for out in node.outputs():
                names.setdefault(out.debugName(), "")
            continue
        ins = [names.get(v.debugName(), "") for v in node.inputs()]
        for out in node.outputs():
            name = scoped(node.scopeName(), f"{kind.split('::')[-1]}_{out.debugName()}")
            names[out.debugName()] = name
            nodes.append(NodeDef(name=name, op=kind, input=[n for n in ins if n]))
    for i, out in enumerate(graph.outputs()):
        src = names.get(out.debugName(), "")
        nodes.append(NodeDef(name=f"output/{i}", op="IO Node", input=[src] if src else []))
    return bytes(GraphDef(node=nodes, versions=VersionDef(producer=22)).SerializeToString())


def trace_graph(model: torch.nn.Module, args: tuple[Any, ...]) -> bytes | str:
    """The serialized ``GraphDef`` of ``model`` on ``args``, or why it could not be traced."""
    modes = {m: m.training for m in model.modules()}
    rng = torch.random.get_rng_state()
    try:
        model.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tracer: Any = torch.jit.trace
            traced = tracer(model, args, strict=False)
            return _graph_def(traced)
    except Exception as exc:  # tracing fails in many legitimate ways: say why, go on
        text = str(exc).strip()
        first = text.splitlines()[0] if text else ""
        return f"{type(exc).__name__}: {first[:300]}"
    finally:
        for m, training in modes.items():
            m.training = training
        torch.random.set_rng_state(rng)
