"""``vizdebug demo``: a small CNN on scikit-learn's bundled digits, watched by vizdebug.

Nothing is downloaded: the 8x8 digits ship inside scikit-learn. In a terminal the training runs
in a child process while the TUI shows the run as it is written (and the live debugger can
attach to it); otherwise (a pipe, CI) it trains here and prints a summary.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from .ui.safe import safe_markup

__all__ = ["run_demo", "train"]


def train(
    run_dir: Path, *, epochs: int, nan_at: int | None, console: Console | None = None
) -> Path:
    """Train the demo model with ``vizdebug.watch`` into ``run_dir``.

    Raises:
        VizdebugError: PyTorch or scikit-learn is missing.
    """
    try:
        import torch
        from sklearn.datasets import load_digits
        from torch import nn
    except ImportError as exc:
        from .errors import VizdebugError

        raise VizdebugError(
            f"the demo needs PyTorch and scikit-learn ({exc.name} is missing); "
            "install them with: pip install 'vizdebug[torch]' scikit-learn"
        ) from exc

    import vizdebug

    console = console or Console()
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    at = {"step": 0}  # the training step about to run (the poison's data-dependent trigger)
    if nan_at is not None:
        _poison(model[6], nan_at, at)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    start = time.perf_counter()
    step = 0
    with vizdebug.watch(model, optimizer, logdir=run_dir, every=5) as watch:  # the one line
        for epoch in range(epochs):
            perm = torch.randperm(len(x))
            for i in range(0, len(x), 64):
                idx = perm[i : i + 64]
                at["step"] = step
                optimizer.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                optimizer.step()
                watch.step(loss=loss)
                step += 1
            with torch.no_grad():
                acc = (model(x).argmax(1) == y).float().mean().item()
            # At the epoch's last training step (step counts the steps done): at ``step`` it
            # would name a step that never ran, and a 870-step run would count 871.
            watch.writer.scalar("accuracy", acc, step - 1)
            console.print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}  accuracy {acc:.1%}")
    console.print(f"trained {step} steps in {time.perf_counter() - start:.1f} s")
    return run_dir


def run_demo(
    logdir: str | None = None,
    *,
    epochs: int | None = None,
    nan_at: int | None = None,
    tui: bool | None = None,
    console: Console | None = None,
) -> Path:
    """Train the demo model and show the run: live in the TUI, or as a printed summary.

    Args:
        logdir: Run directory (default: a new one under ``$VIZDEBUG_LOGDIR`` or ``./runs``).
        epochs: Epochs to train (default: 30 with the TUI, 3 without, or more to reach
            ``nan_at``).
        nan_at: Step at which to poison one layer's output with a NaN, to show the tracing.
        tui: Open the TUI (default: when standard input and output are a terminal).
        console: Where to print.

    Returns:
        The run directory.

    Raises:
        ValueError: ``epochs`` is not positive, or ``nan_at`` is not a step of the training.
    """
    from .runs.layout import new_run_dir

    console = console or Console()
    if tui is None:
        tui = sys.stdin.isatty() and sys.stdout.isatty()
    if epochs is None:
        epochs = 30 if tui else 3
        if isinstance(nan_at, int) and nan_at >= 0:  # long enough to reach the NaN and beyond
            epochs = max(epochs, nan_at // -(-_DIGITS // _BATCH) + 2)
    _check_args(epochs, nan_at)
    run_dir = Path(logdir) if logdir else new_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    if not tui:
        train(run_dir, epochs=epochs, nan_at=nan_at, console=console)
        from .ui.console import print_run

        console.print()
        print_run(str(run_dir), console)
        console.print(f"\nThe run is in [bold]{safe_markup(run_dir)}[/]. Look at it with:")
        console.print(safe_markup(f"  vizdebug tui {run_dir}"))
        console.print(safe_markup(f"  tensorboard --logdir {run_dir.parent}"))
        return run_dir

    argv = [sys.executable, "-m", "vizdebug.demo", str(run_dir), "--epochs", str(epochs)]
    if nan_at is not None:
        argv += ["--nan-at", str(nan_at)]
    with open(run_dir / "demo-training.log", "w") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            with console.status("starting the training process ..."):
                while child.poll() is None and not any(run_dir.glob("*tfevents*")):
                    time.sleep(0.1)
            if child.poll() not in (None, 0):
                from .errors import VizdebugError

                raise VizdebugError(
                    f"the demo training failed; see {run_dir / 'demo-training.log'}"
                )
            from .tui.app import VizdebugApp

            VizdebugApp(run_dir).run()
        finally:
            if child.poll() is None:
                child.terminate()
                child.wait(30)
    console.print(
        f"The run is in [bold]{safe_markup(run_dir)}[/]; training log: "
        + safe_markup(run_dir / "demo-training.log")
    )
    return run_dir


#: What :func:`train` iterates over: 1797 digits in batches of 64, so 29 steps an epoch.
_DIGITS, _BATCH = 1797, 64


def _check_args(epochs: object, nan_at: object) -> None:
    """Reject arguments the demo would silently ignore (a NaN step it never reaches)."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"--epochs must be a whole number of at least 1, got {epochs!r}")
    if nan_at is None:
        return
    last = epochs * -(-_DIGITS // _BATCH) - 1
    if not isinstance(nan_at, int) or isinstance(nan_at, bool) or not 0 <= nan_at <= last:
        raise ValueError(
            f"--nan-at must be a training step from 0 to {last} ({epochs} epochs), got {nan_at!r}"
        )


def _poison(module: object, at_step: int, at: dict[str, int]) -> None:
    """Make ``module`` output a NaN in the training step ``at_step`` (``at["step"]`` is the step
    under way): a fault that depends on the step's data, as a bad batch does, so it happens
    again when vizdebug replays the step to find its origin. Evaluation passes (no grad) are
    left alone."""

    def hook(_module: object, _inputs: object, output: object) -> object:
        import torch

        if isinstance(output, torch.Tensor) and torch.is_grad_enabled() and at["step"] == at_step:
            output = output.clone()
            output[0, 0] = float("nan")
        return output

    module.register_forward_hook(hook)  # type: ignore[attr-defined]


def _child_main() -> None:
    parser = argparse.ArgumentParser(prog="python -m vizdebug.demo")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--nan-at", type=int, default=None)
    args = parser.parse_args()
    try:
        _check_args(args.epochs, args.nan_at)
    except ValueError as exc:
        parser.error(str(exc))
    train(args.run_dir, epochs=args.epochs, nan_at=args.nan_at)


if __name__ == "__main__":
    _child_main()
