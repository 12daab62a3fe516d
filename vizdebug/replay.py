"""``vizdebug replay RUN --to visdom``: send a stored run to a live dashboard.

The run is read with :func:`vizdebug.runs.load_run` and fed, in step order, through the same
sink a live run uses (:class:`vizdebug_visdom.VisdomSink`), without its live rate limits: every
point is sent, each window in as few requests as memory allows. An unreachable server is a
one-line error (exit code 2) that names the URL and how to start a server.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import VizdebugError

if TYPE_CHECKING:
    from .events import Event
    from .runs import Run

__all__ = ["ReplayError", "register", "replay_events"]

#: Events handed to the sink at a time.
CHUNK = 5000
#: Points buffered before they are sent (bounds memory for very long runs).
PUSH_POINTS = 1_000_000
#: Seconds to wait for the first answer, and for any later one.
PING_TIMEOUT = 5.0
REQUEST_TIMEOUT = 120.0


class ReplayError(VizdebugError):
    """A replay could not reach or write to its target."""


def register(subparsers: Any) -> None:
    """Add the ``replay`` subcommand."""
    parser = subparsers.add_parser(
        "replay",
        help="send a stored run to a live dashboard (Visdom)",
        description="Send a stored run to a Visdom server, one environment per run (and rank).",
    )
    parser.add_argument("run", help="a run directory (or one of its event files)")
    parser.add_argument(
        "--to", required=True, choices=["visdom"], help="where to send it (only: visdom)"
    )
    parser.add_argument(
        "--server",
        default=None,
        help="Visdom server URL (default: $VIZDEBUG_VISDOM_SERVER or http://localhost:8097)",
    )
    parser.add_argument(
        "--env", default=None, help="Visdom environment (default: vizdebug_<run name>)"
    )
    parser.set_defaults(func=_cmd_replay)


def replay_events(run: Run) -> list[Event]:
    """A run's events in step order; within a step, run info and model structure come first."""
    first: list[Event] = [*run.run_infos, *run.structures]
    rest: list[Event] = [e for events in run.scalars.values() for e in events]
    rest += run.stats
    rest += [e for events in run.histograms.values() for e in events]
    rest += [*run.anomalies, *run.notes, *run.snapshots]
    keyed = [(e.step, 0, e) for e in first] + [(e.step, 1, e) for e in rest]
    keyed.sort(key=lambda item: (item[0], item[1]))  # stable: file order within a step
    return [e for _, _, e in keyed]


def _cmd_replay(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from .runs import load_run
    from .ui.safe import safe, safe_markup

    try:
        from vizdebug_visdom.client import (
            START_HINT,
            VisdomClient,
            VisdomRequestError,
            VisdomUnreachableError,
        )
        from vizdebug_visdom.sink import VisdomSink
        from vizdebug_visdom.windows import env_name
    except ImportError as exc:  # the plugin ships with vizdebug; a broken install lands here
        raise ReplayError(
            f"the Visdom plugin is not importable ({exc}); reinstall vizdebug"
        ) from exc

    run = load_run(args.run)
    events = replay_events(run)
    ranks = sorted({e.rank for e in events}) or [0]
    base = args.env or env_name(run.name)
    sinks: dict[int, VisdomSink] = {}
    for rank in ranks:
        env = base if len(ranks) == 1 else f"{base}-r{rank}"
        sinks[rank] = VisdomSink(
            args.server,
            env=env,
            interval=float("inf"),
            max_points=None,
            max_buffer=4 * PUSH_POINTS,
            timeout=REQUEST_TIMEOUT,  # one request may carry a whole window
        )
    server = sinks[ranks[0]].client.server
    try:
        VisdomClient(server, timeout=PING_TIMEOUT).ping()
    except VisdomUnreachableError as exc:
        raise ReplayError(f"{exc}; {START_HINT}") from None
    console = Console(stderr=True)
    ok = False
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
        ) as progress:
            # Events are buffered and each window sent with all its points at once (up to
            # PUSH_POINTS): Visdom's server re-diffs a whole window on every append, so few big
            # requests beat many small ones.
            reading = progress.add_task(safe_markup(f"reading {run.name}"), total=len(events))
            sending = progress.add_task(safe_markup(f"sending to {server}"), total=0)

            windows = [0]

            def push_all() -> None:
                windows[0] += sum(s.dashboard.pending_windows() for s in sinks.values())
                progress.update(sending, total=windows[0])
                for sink in sinks.values():
                    sink.push(lambda: progress.advance(sending))

            for start in range(0, len(events), CHUNK):
                chunk = events[start : start + CHUNK]
                for rank in ranks:
                    part = _of_rank(chunk, rank) if len(ranks) > 1 else chunk
                    if part:
                        sinks[rank].write(part)
                progress.advance(reading, len(chunk))
                if any(len(s.dashboard.points) >= PUSH_POINTS for s in sinks.values()):
                    push_all()
            push_all()
        ok = True
    except (VisdomUnreachableError, VisdomRequestError) as exc:
        raise ReplayError(f"{exc} (replay stopped; run it again to resend)") from None
    finally:
        for sink in sinks.values():
            if ok:
                sink.close()  # saves the environment on the server
            else:
                sink.client.close()
    envs = ", ".join(s.env or "" for s in sinks.values())
    points = sum(s.status.points_sent for s in sinks.values())
    print(
        safe(
            f"replayed {len(events)} events ({points} points) of {run.name} to {server}, env {envs}"
        )
    )
    return 0


def _of_rank(events: Sequence[Event], rank: int) -> list[Event]:
    return [e for e in events if e.rank == rank]
