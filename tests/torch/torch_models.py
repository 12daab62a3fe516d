"""Small models for the adapter tests."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn


class Block(nn.Module):
    """A nested custom module with an in-place activation."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n, n)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


@dataclasses.dataclass
class Out:
    logits: torch.Tensor
    extra: torch.Tensor | None


class Fancy(nn.Module):
    """Nested modules, a module called twice, tuple/dict/dataclass/None and int outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.block = Block(6)
        self.shared = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> Out:
        h = self.block(x)
        h = self.shared(h)
        h = self.shared(torch.tanh(h))
        return Out(logits=self.head(h), extra=None)


class Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return x * 2, {"idx": x.argmax(dim=-1), "half": x / 2}


def digits_like_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 16, 10),
    )


class NanBackward(torch.autograd.Function):
    """Identity forward (a copy); a NaN gradient backward: a fault only the backward pass has."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, g: torch.Tensor) -> torch.Tensor:
        return g * float("nan")
