"""The run-directory sink: appends events to the rank's TensorBoard event file."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from .. import yielding
from ..batch import EventBatch
from ..events import Event
from .codec import ScalarTemplate, encode_batch, file_version_event
from .layout import event_file_name
from .native import NativeConfig, NativeEncoder
from .records import encode_record, encode_records

__all__ = ["EventFileSink"]


class EventFileSink:
    """Writes events to ``<run_dir>/events.out.tfevents.*``; always on.

    Args:
        run_dir: The run directory (created if missing).
        rank: The process's rank (one file per rank).
        native: Copies for TensorBoard's own dashboards (see :mod:`vizdebug.runs.native`),
            written by rank 0 only; default: what the ``VIZDEBUG_TB_*`` variables say.
    """

    name = "rundir"

    def __init__(self, run_dir: Path, rank: int = 0, *, native: NativeConfig | None = None) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = run_dir / event_file_name(rank, now=now)
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open for the run's life
        self._file.write(encode_record(file_version_event(now)))
        self._file.flush()
        self._template = ScalarTemplate()
        # Only rank 0: TensorBoard merges a run directory's files, so ranks' copies would clash.
        self._native: NativeEncoder | None = NativeEncoder(native) if rank == 0 else None

    def write(self, events: Sequence[Event]) -> None:
        """Encode and append a batch (buffered until :meth:`flush`)."""
        items = events.raw() if isinstance(events, EventBatch) else events
        records = encode_batch(items, self._template)
        if self._native is not None:
            yielding.pause()
            try:
                records += self._native.encode(items)
            except Exception:  # the copies must never cost the durable records
                logging.getLogger("vizdebug").exception(
                    "native TensorBoard summaries failed; writing without them from now on"
                )
                self._native = None
        self._file.write(encode_records(records))

    def flush(self) -> None:
        """Hand the buffered bytes to the OS: they survive a killed process from here on."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close the file."""
        if not self._file.closed:
            self._file.flush()
            self._file.close()
