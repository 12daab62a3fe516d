"""What the runs list and the message bar say about the open run (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..data import RunStore
from ..widgets.runs_list import RunEntry

__all__ = ["CutFile", "cut_message", "with_open_run"]

#: An event file that ends in an incomplete record: (name, bytes read, size).
CutFile = tuple[str, int, int]


def with_open_run(
    entries: Sequence[RunEntry], store: RunStore, *, live: bool, cut: Sequence[CutFile]
) -> list[RunEntry]:
    """``entries`` with the open run's counts taken from its store.

    One count (1 + the highest step read) in the step bar and in the runs list, current as
    the run grows (a summary of run.json lags behind the event files), and a warning when a
    file could not be read whole.
    """
    problems = [str(p) for p in store.problems]
    problems += [f"{name}: cut at byte {offset} of {size}" for name, offset, size in cut]
    warning = problems[0] if problems else ""
    return [
        replace(
            e,
            steps=store.step_count,
            anomalies=len(store.anomalies),
            live=live,
            warning=warning,
        )
        if e.path == store.path
        else e
        for e in entries
    ]


def cut_message(cut: Sequence[CutFile]) -> str:
    """The warning for event files that could not be read whole ("" for none)."""
    if not cut:
        return ""
    name, offset, size = cut[0]
    more = f" (and {len(cut) - 1} more file(s))" if len(cut) > 1 else ""
    return (
        f"{name} could not be read whole: it ends in an incomplete record at byte {offset} "
        f"({size - offset} bytes not read; its writer stopped mid-write){more}. "
        "Steps and counts shown are those read."
    )
