"""The run-directory sink: appends events to the rank's TensorBoard event file."""

from __future__ import annotations

import contextlib
import logging
import os
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

    Each batch is written to the file descriptor at once (no user-space buffer, so a killed
    process loses only what was not yet handed over). A write the disk refuses part-way
    keeps the rest of that batch's bytes and finishes them first on the next call: the file
    always holds whole records plus at most the start of one, which readers treat as a tail
    still being written, so an outage never corrupts the file. While unwritten bytes remain,
    :meth:`write` and :meth:`flush` raise the disk's error and accept nothing new: the
    :class:`~vizdebug.fanout.SinkRunner` holds the batches and retries.

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
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._closed = False
        # bytes of accepted batches the disk has not taken yet (a full disk at start too)
        self._rest = memoryview(encode_record(file_version_event(now)))
        with contextlib.suppress(OSError):
            self._push()
        self._template = ScalarTemplate()
        # Only rank 0: TensorBoard merges a run directory's files, so ranks' copies would clash.
        self._native: NativeEncoder | None = NativeEncoder(native) if rank == 0 else None

    def _push(self) -> None:
        rest = self._rest
        while rest:
            rest = rest[os.write(self._fd, rest) :]
            self._rest = rest

    def write(self, events: Sequence[Event]) -> None:
        """Encode and append a batch.

        Raises:
            OSError: The bytes of an earlier batch still cannot be written (the disk is full);
                this batch was not accepted.
        """
        self._push()  # raises while an earlier batch is unfinished: this one is held, not lost
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
        self._rest = memoryview(encode_records(records))
        with contextlib.suppress(OSError):  # accepted: the rest goes first on the next call
            self._push()

    def flush(self) -> None:
        """Make sure every accepted batch reached the OS (it survives a killed process).

        Raises:
            OSError: Bytes are still unwritten (the disk is full).
        """
        self._push()

    def close(self) -> None:
        """Write what is left and close the file."""
        if self._closed:
            return
        try:
            self._push()
        finally:
            self._closed = True
            os.close(self._fd)
