"""Where the dashboard's data comes from: the run's event files, or TensorBoard's data provider.

TensorBoard keeps only a sample of each tensor tag (10 per tag for plugins it does not know,
unless started with ``--samples_per_plugin vizdebug=0``, which keeps all). vizdebug packs a
whole step's statistics into one tensor, and every anomaly of a run shares one tag, so a
sample would show 10 steps and 10 anomalies. Hence:

* **files** (preferred): when the run is a local directory under ``--logdir``, the plugin tails
  its event files itself with :class:`vizdebug.runs.RunReader`; every step, every anomaly and
  every rank, whatever the flags.
* **provider** (fallback, e.g. for a ``gs://`` logdir): the plugin reads the tensors through
  ``context.data_provider``. Complete only with ``--samples_per_plugin vizdebug=0``; otherwise
  the answers say ``complete: false`` and the dashboard shows how to fix it. TensorBoard merges
  a directory's event files into one run, so ranks cannot be told apart there: all is rank 0.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.data import provider as tb_provider
from tensorboard.util import tensor_util

from vizdebug.events import Event
from vizdebug.runs.codec import Decoder, StatsBlock
from vizdebug.runs.reader import RunReader, is_event_file

from .data import RankData
from .metadata import PLUGIN_NAME

__all__ = ["RunState", "Store"]

_REFRESH_SECS = 1.0
_ALL = 10**9  # "as many as the provider kept"


class RunState:
    """One run's data, by rank, and how it was read."""

    def __init__(self, source: str, complete: bool) -> None:
        self.source = source
        self.complete = complete
        self.ranks: dict[int, RankData] = {}
        self.refreshed = 0.0

    def add(self, item: Event | StatsBlock) -> None:
        rank = item.rank
        data = self.ranks.get(rank)
        if data is None:
            data = self.ranks[rank] = RankData()
        data.add(item)


def _local_dir(logdir: str | None, run: str) -> Path | None:
    if not logdir or "://" in logdir:
        return None
    root = Path(logdir).resolve()
    path = (root / run).resolve() if run not in ("", ".") else root
    if not path.is_relative_to(root) or not path.is_dir():
        return None
    try:
        if not any(is_event_file(p) for p in path.iterdir()):
            return None
    except OSError:
        return None
    return path


class Store:
    """Caches every run's :class:`RunState`; thread-safe (werkzeug serves on many threads).

    Args:
        data_provider: TensorBoard's data provider.
        logdir: ``--logdir``, for reading event files directly (None: provider only).
        samples: The ``--samples_per_plugin`` hint for ``vizdebug`` (0: keep all).
        clock: Seconds, for the refresh interval.
    """

    def __init__(
        self,
        data_provider: Any,
        logdir: str | None,
        samples: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = data_provider
        self.logdir = logdir
        self.samples = samples
        self.clock = clock
        self._lock = threading.Lock()
        self._runs: dict[str, RunState] = {}
        self._readers: dict[str, RunReader] = {}

    def run_names(self, ctx: Any, experiment: str) -> list[str]:
        """Runs that hold vizdebug data, sorted."""
        if self.provider is None:
            return []
        mapping = self.provider.list_tensors(ctx, experiment_id=experiment, plugin_name=PLUGIN_NAME)
        return sorted(mapping)

    def get(self, ctx: Any, experiment: str, run: str) -> RunState:
        """The run's data, refreshed when it is older than a second."""
        with self._lock:
            state = self._runs.get(run)
            now = self.clock()
            if state is not None and now - state.refreshed < _REFRESH_SECS:
                return state
            path = _local_dir(self.logdir, run)
            if path is not None:
                reader = self._readers.get(run)
                if reader is None or state is None:
                    reader = self._readers[run] = RunReader(path, expand_stats=False)
                    state = self._runs[run] = RunState("files", True)
                for item in reader.poll():
                    state.add(item)
            else:
                state = self._runs[run] = RunState("provider", self.samples == 0)
                for item in self._provider_items(ctx, experiment, run):
                    state.add(item)
            state.refreshed = now
            return state

    def _provider_items(self, ctx: Any, experiment: str, run: str) -> list[Event | StatsBlock]:
        listing = self.provider.list_tensors(
            ctx,
            experiment_id=experiment,
            plugin_name=PLUGIN_NAME,
            run_tag_filter=tb_provider.RunTagFilter(runs=[run]),
        ).get(run, {})
        data = self.provider.read_tensors(
            ctx,
            experiment_id=experiment,
            plugin_name=PLUGIN_NAME,
            downsample=_ALL,
            run_tag_filter=tb_provider.RunTagFilter(runs=[run]),
        ).get(run, {})
        decoder = Decoder(os.path.basename(run), 0, expand_stats=False)
        items: list[Event | StatsBlock] = []
        for tag, series in listing.items():
            metadata = summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(
                    plugin_name=PLUGIN_NAME, content=series.plugin_content
                )
            )
            for datum in data.get(tag, []):
                value = summary_pb2.Summary.Value(
                    tag=tag, metadata=metadata, tensor=tensor_util.make_tensor_proto(datum.numpy)
                )
                record = event_pb2.Event(
                    step=datum.step,
                    wall_time=datum.wall_time,
                    summary=summary_pb2.Summary(value=[value]),
                )
                try:
                    items.extend(decoder.decode(record.SerializeToString()))
                except Exception:  # a damaged record is skipped, as the file reader does
                    continue
        return items
