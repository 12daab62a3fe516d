"""The ``vizdebug`` command line.

A user error prints one line to stderr and exits with code 2; there are no tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from .errors import VizdebugError

__all__ = ["main"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        from .ui.safe import safe

        self.exit(EXIT_USAGE, f"{self.prog}: error: {safe(message)} (see --help)\n")


class UsageError(VizdebugError):
    """A mistake in how a command was called."""


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"int >= {low}"
    return parse


def _cmd_runs(args: argparse.Namespace) -> int:
    from .runs import default_root

    logdir = args.logdir if args.logdir is not None else str(default_root())
    if args.json:
        from .ui.jsonout import runs_json

        print(runs_json(logdir))
    else:
        from .ui.console import print_runs

        print_runs(logdir)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    if args.json:
        from .ui.jsonout import run_json

        print(run_json(args.run))
    else:
        from .ui.console import print_run

        print_run(args.run)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(logdir=args.logdir, epochs=args.epochs, nan_at=args.nan_at, tui=args.tui)
    return 0


#: Modules that add subcommands: each defines ``register(subparsers) -> None`` and must import
#: quickly (no framework import at registration; import heavy things inside the command).
_COMMAND_MODULES: tuple[str, ...] = ("vizdebug.replay", "vizdebug.tui.cli", "vizdebug.tfdbg")


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="vizdebug",
        description="See and debug deep-learning training: runs, summaries, a demo.",
    )
    parser.add_argument("--version", action="version", version=f"vizdebug {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    runs = sub.add_parser("runs", help="list the runs in a log directory")
    runs.add_argument(
        "logdir", nargs="?", help="log directory (default: $VIZDEBUG_LOGDIR or ./runs)"
    )
    runs.add_argument(
        "--json", action="store_true", help="print a JSON summary (schema: docs/cli.md)"
    )
    runs.set_defaults(func=_cmd_runs)

    show = sub.add_parser("show", help="summarize one run")
    show.add_argument("run", help="a run directory (or one of its event files)")
    show.add_argument(
        "--json", action="store_true", help="print a JSON summary (schema: docs/cli.md)"
    )
    show.set_defaults(func=_cmd_show)

    demo = sub.add_parser(
        "demo", help="train a small CNN on scikit-learn's digits and watch it live"
    )
    demo.add_argument("--logdir", help="run directory (default: a new one under ./runs)")
    demo.add_argument(
        "--epochs",
        type=_int_at_least(1),
        default=None,
        help="epochs to train (default: 30 in the TUI, else 3)",
    )
    demo.add_argument(
        "--tui",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="watch the training live in the TUI (default: when run in a terminal)",
    )
    demo.add_argument(
        "--nan-at",
        type=_int_at_least(0),
        default=None,
        metavar="STEP",
        help="inject a NaN into one layer at this step, to see it traced",
    )
    demo.set_defaults(func=_cmd_demo)

    import importlib

    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return func(args)
    except (VizdebugError, ValueError, TypeError, OSError, RecursionError) as exc:
        # RecursionError: a file nested too deeply (JSON) for a reader; still one line, exit 2.
        from .ui.safe import safe

        why = "a file is nested too deeply to read: " if isinstance(exc, RecursionError) else ""
        print(f"vizdebug {args.command}: error: {why}{safe(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"vizdebug {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
