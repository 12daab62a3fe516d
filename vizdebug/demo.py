"""``vizdebug demo``: a small CNN on scikit-learn's bundled digits, watched by vizdebug.

Nothing is downloaded: the 8x8 digits ship inside scikit-learn.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

__all__ = ["run_demo"]


def run_demo(
    logdir: str | None = None,
    *,
    epochs: int = 3,
    nan_at: int | None = None,
    console: Console | None = None,
) -> Path:
    """Train the demo model with ``vizdebug.watch`` and print a summary of the run.

    Args:
        logdir: Run directory (default: a new one under ``$VIZDEBUG_LOGDIR`` or ``./runs``).
        epochs: Epochs to train.
        nan_at: Step at which to poison one layer's output with a NaN, to show the tracing.
        console: Where to print.

    Returns:
        The run directory.

    Raises:
        ValueError: ``epochs`` is not positive.
        VizdebugError: The demo needs the torch extra (``pip install 'vizdebug[torch]'``).
    """
    if epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {epochs}")
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
    if nan_at is not None:
        _poison(model[6], nan_at)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    start = time.perf_counter()
    with vizdebug.watch(model, optimizer, logdir=logdir) as watch:  # the one line
        step = 0
        for epoch in range(epochs):
            perm = torch.randperm(len(x))
            for i in range(0, len(x), 64):
                idx = perm[i : i + 64]
                optimizer.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                optimizer.step()
                watch.step(loss=loss)
                step += 1
            with torch.no_grad():
                acc = (model(x).argmax(1) == y).float().mean().item()
            console.print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}  accuracy {acc:.1%}")
        run_dir: Path = watch.writer.run_dir
    console.print(f"trained {step} steps in {time.perf_counter() - start:.1f} s\n")

    from .ui.console import print_run

    print_run(str(run_dir), console)
    console.print(f"\nThe run is in [bold]{run_dir}[/]. Look at it with:")
    console.print(f"  vizdebug show {run_dir}\n  tensorboard --logdir {run_dir.parent}")
    return run_dir


def _poison(module: object, at_step: int) -> None:
    """Make ``module`` output a NaN on its ``at_step``-th training call."""
    calls = {"n": 0}

    def hook(_module: object, _inputs: object, output: object) -> object:
        import torch

        if isinstance(output, torch.Tensor) and _module.training:  # type: ignore[attr-defined]
            calls["n"] += 1
            if calls["n"] == at_step + 1:
                output = output.clone()
                output[0, 0] = float("nan")
        return output

    module.register_forward_hook(hook)  # type: ignore[attr-defined]
