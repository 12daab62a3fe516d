"""The ``vizdebug tui`` subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``vizdebug tui [PATH]`` to the CLI's subparsers."""
    p = subparsers.add_parser(
        "tui",
        help="browse, tail and inspect runs in a terminal UI",
        description="Open the terminal UI on a log directory, a run directory or an event file.",
    )
    p.add_argument(
        "path",
        nargs="?",
        help="log directory, run directory or event file (default: $VIZDEBUG_LOGDIR or ./runs)",
    )
    p.add_argument(
        "--poll",
        type=float,
        default=0.1,
        metavar="SECS",
        help="seconds between checks for new events (default: 0.1)",
    )
    p.add_argument(
        "--attach",
        nargs="?",
        const="",
        default=None,
        metavar="RUN",
        help="attach the live debugger to RUN (a run directory), or to the only live run under "
        "the log directory (a picker if several)",
    )
    p.set_defaults(func=_cmd_tui)


def _cmd_tui(args: argparse.Namespace) -> int:
    from ..errors import RunNotFoundError

    if args.path is not None and not Path(args.path).exists():
        raise RunNotFoundError(f"{args.path} does not exist; pass a log or run directory")
    if args.poll <= 0:
        raise ValueError(f"--poll must be positive, got {args.poll}")
    from .app import VizdebugApp

    path: str | None = args.path
    attach: list[Any] = []
    if args.attach is not None:
        from .live_actions import live_runs_to_attach

        path, attach = live_runs_to_attach(args.attach, args.path)
    VizdebugApp(path, poll_interval=args.poll, attach=attach).run()
    return 0
