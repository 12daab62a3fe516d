"""Train a small CNN on scikit-learn's digits with vizdebug watching: the diff is one line.

Run: ``python examples/torch_digits.py`` then ``tensorboard --logdir runs`` (or ``vizdebug tui``).
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn

import vizdebug


def main(epochs: int = 5, logdir: str | None = None) -> float:
    """Train and return the final training accuracy."""
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 16, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    watch = vizdebug.watch(model, opt, logdir=logdir)  # <- the one line

    for _ in range(epochs):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64])
            loss.backward()
            opt.step()
            watch.step(loss=loss)  # optional: records the loss
    watch.close()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    print(f"train accuracy {accuracy:.3f}; run written to {watch.writer.run_dir}")
    return accuracy


if __name__ == "__main__":
    main()
