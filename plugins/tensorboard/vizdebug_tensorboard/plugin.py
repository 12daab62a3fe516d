"""The ``vizdebug`` TensorBoard dashboard: health heatmap, anomaly timeline, module panel.

Registered through the ``tensorboard_plugins`` entry point, so installing vizdebug is all it
takes. Routes (under ``/data/plugin/vizdebug``) answer JSON without NaN literals; a bad query
parameter gets a 400 with ``{"error": "..."}``:

``/runs``
    runs with vizdebug data: ranks, roles, last step, latest wall time, anomaly count, source,
    completeness.
``/heatmap?run=&rank=&role=&stat=&max_cols=``
    names x steps of one statistic (see :data:`~vizdebug_tensorboard.metadata.STATS`), with
    each cell's flags (NaN, +Inf, -Inf, no finite value; see :data:`~.data.FLAGS`).
``/anomalies?run=&rank=&limit=``
    anomalies in step order.
``/module?run=&rank=&name=&role=&max_points=``
    one tensor's statistics over the steps and its latest histogram.
``/static/<file>``
    the frontend (``index.js``, an ES module TensorBoard loads in an iframe).
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

from tensorboard import plugin_util
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from vizdebug.events import ROLES

from . import metadata
from .data import RankData, jsonable
from .sources import RunState, Store

__all__ = ["VizdebugLoader", "VizdebugPlugin"]

_STATIC = Path(__file__).resolve().parent / "static"
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}
_WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class _BadRequest(Exception):
    """A query the routes refuse; the message goes back to the caller."""


def _json(request: wrappers.Request, body: Any, code: int = 200) -> wrappers.Response:
    text = json.dumps(body, allow_nan=False, separators=(",", ":"))
    return cast(wrappers.Response, http_util.Respond(request, text, "application/json", code=code))


def _int(request: wrappers.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be a whole number, got {raw[:40]!r}") from None
    if not lo <= value <= hi:
        raise _BadRequest(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _choice(request: wrappers.Request, name: str, choices: Any, default: str) -> str:
    value = request.args.get(name) or default
    if value not in choices:
        raise _BadRequest(f"{name} must be one of {', '.join(choices)}; got {value[:40]!r}")
    return value


def _wsgi(handler: Callable[[wrappers.Request], wrappers.Response]) -> _WSGIApp:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        response = handler(wrappers.Request(environ))
        return response(environ, start_response)

    return app


def _guarded(
    impl: Callable[[wrappers.Request], dict[str, Any]],
) -> Callable[[wrappers.Request], wrappers.Response]:
    def handler(request: wrappers.Request) -> wrappers.Response:
        try:
            return _json(request, impl(request))
        except _BadRequest as exc:
            return _json(request, {"error": str(exc)}, 400)

    return handler


class VizdebugPlugin(base_plugin.TBPlugin):  # type: ignore[misc]
    """Serves the vizdebug dashboard.

    Args:
        context: TensorBoard's :class:`~tensorboard.plugins.base_plugin.TBContext`; the data
            provider lists the runs, ``logdir`` lets the plugin read event files directly.
    """

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext) -> None:
        samples = (context.sampling_hints or {}).get(self.plugin_name)
        self._store = Store(context.data_provider, context.logdir, samples)

    def get_plugin_apps(self) -> dict[str, _WSGIApp]:
        """The routes."""
        return {
            "/static/*": _wsgi(self._serve_static),
            "/runs": _wsgi(self._serve_runs),
            "/heatmap": _wsgi(_guarded(self._heatmap)),
            "/anomalies": _wsgi(_guarded(self._anomalies)),
            "/module": _wsgi(_guarded(self._module)),
        }

    def is_active(self) -> bool:
        """TensorBoard's core activates the plugin when a run holds ``vizdebug`` summaries."""
        return False

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        """The frontend is an ES module (``static/index.js``) exporting ``render()``."""
        return base_plugin.FrontendMetadata(es_module_path="/static/index.js", tab_name="vizdebug")

    # -- routes ------------------------------------------------------------------------------

    def _serve_static(self, request: wrappers.Request) -> wrappers.Response:
        name = request.path.split("/static/", 1)[-1]
        parts = name.split("/")
        bad = (
            not name
            or len(name) > 255  # no static file has a longer name; the OS would refuse it
            or "\\" in name
            or "\0" in name
            or any(p in ("", ".", "..") for p in parts)
        )
        try:
            path = (_STATIC / name).resolve() if not bad else _STATIC
            found = not bad and path.is_relative_to(_STATIC) and path.is_file()
        except (OSError, ValueError):  # a name the filesystem refuses is simply not there
            found = False
        if not found:
            return _json(request, {"error": f"no static file {name[:80]!r}"}, 404)
        ctype = _STATIC_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        if ctype is None:
            return _json(request, {"error": f"no static file {name[:80]!r}"}, 404)
        return cast(wrappers.Response, http_util.Respond(request, path.read_bytes(), ctype))

    def _serve_runs(self, request: wrappers.Request) -> wrappers.Response:
        ctx, experiment = self._ctx(request)
        runs: list[dict[str, Any]] = []
        for name in self._store.run_names(ctx, experiment):
            try:
                state = self._store.get(ctx, experiment, name)
            except Exception as exc:  # one unreadable run must not hide the others
                runs.append(
                    {
                        "name": name,
                        "source": "",
                        "complete": False,
                        "ranks": [0],
                        "roles": [],
                        "last_step": -1,
                        "anomalies": 0,
                        "last_wall_time": 0.0,
                        "error": f"cannot read this run: {exc}"[:300],
                    }
                )
                continue
            ranks = sorted(state.ranks) or [0]
            first = state.ranks.get(ranks[0], RankData())
            runs.append(
                {
                    "name": name,
                    "source": state.source,
                    "complete": state.complete,
                    "ranks": ranks,
                    "roles": first.roles(),
                    "last_step": max((d.last_step for d in state.ranks.values()), default=-1),
                    "anomalies": sum(len(d.anomalies) for d in state.ranks.values()),
                    "last_wall_time": jsonable(
                        max((d.last_wall_time for d in state.ranks.values()), default=0.0)
                    ),
                }
            )
        return _json(
            request, {"runs": runs, "stats": metadata.STATS, "samples_hint": self._store.samples}
        )

    # -- implementation ----------------------------------------------------------------------

    def _ctx(self, request: wrappers.Request) -> tuple[Any, str]:
        return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)

    def _rank(self, request: wrappers.Request) -> tuple[RunState, RankData, int]:
        run = request.args.get("run")
        if not run:
            raise _BadRequest("run is required (the /runs route lists them)")
        ctx, experiment = self._ctx(request)
        if run not in self._store.run_names(ctx, experiment):
            raise _BadRequest(f"no run {run[:80]!r} with vizdebug data; /runs lists them")
        state = self._store.get(ctx, experiment, run)
        rank = _int(request, "rank", 0, 0, 1_000_000)
        data = state.ranks.get(rank)
        if data is None:
            if state.ranks or rank != 0:
                raise _BadRequest(
                    f"run {run[:80]!r} has no rank {rank}; it has {sorted(state.ranks)}"
                )
            data = RankData()
        return state, data, rank

    def _meta(self, state: RunState, run: str, rank: int) -> dict[str, Any]:
        return {"run": run, "rank": rank, "source": state.source, "complete": state.complete}

    def _heatmap(self, request: wrappers.Request) -> dict[str, Any]:
        state, data, rank = self._rank(request)
        stat = _choice(request, "stat", metadata.STATS, "l2")
        role = _choice(request, "role", ROLES, "grad")
        max_cols = _int(request, "max_cols", 400, 1, 10_000)
        return {
            **self._meta(state, request.args["run"], rank),
            **data.heatmap(role, stat, max_cols),
        }

    def _anomalies(self, request: wrappers.Request) -> dict[str, Any]:
        state, data, rank = self._rank(request)
        limit = _int(request, "limit", 1000, 1, 100_000)
        return {**self._meta(state, request.args["run"], rank), **data.anomaly_list(limit)}

    def _module(self, request: wrappers.Request) -> dict[str, Any]:
        state, data, rank = self._rank(request)
        name = request.args.get("name")
        if name is None:
            raise _BadRequest("name is required (a name from /heatmap)")
        role = _choice(request, "role", ROLES, "output")
        max_points = _int(request, "max_points", 2000, 2, 100_000)
        found = data.module(name, role, max_points)
        if found is None:
            raise _BadRequest(f"no {role} statistics for {name[:80]!r} in this run and rank")
        return {**self._meta(state, request.args["run"], rank), **found}


class VizdebugLoader(base_plugin.TBLoader):  # type: ignore[misc]
    """Loads :class:`VizdebugPlugin` (what the ``tensorboard_plugins`` entry point names)."""

    def load(self, context: base_plugin.TBContext) -> VizdebugPlugin:
        """Build the plugin for a TensorBoard instance."""
        return VizdebugPlugin(context)
