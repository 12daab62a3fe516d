"""A NaN appears at a known step in a known module; vizdebug names both.

The module ``blowup`` takes ``log`` of its input; at step 7 the input is made negative, so its
output becomes NaN. Run ``python examples/torch_nan.py``: the warning and the anomaly event name
step 7 and module 'blowup' (LogLayer); the flight recorder saved every module's inputs and
outputs of that step as a safetensors snapshot.
"""

from __future__ import annotations

import torch
from torch import nn

import vizdebug
from vizdebug.runs import load_run

BAD_STEP = 7


class LogLayer(nn.Module):
    """log(x): NaN for negative inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.blowup = LogLayer()
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blowup(torch.sigmoid(self.embed(x))))


def main(logdir: str | None = None) -> tuple[int, str]:
    """Train until the NaN; return the (step, module) vizdebug reported."""
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with vizdebug.watch(model, opt, logdir=logdir) as watch:
        for step in range(10):
            if step == BAD_STEP:
                # From now on LogLayer sees negative inputs (as if the data had changed).
                model.blowup.register_forward_pre_hook(lambda m, a: (a[0] - 2.0,))
            opt.zero_grad()
            loss = model(torch.randn(32, 8)).square().mean()
            loss.backward()
            opt.step()  # vizdebug checks the step here and warns about the NaN
            watch.step(loss=loss)
    run = load_run(watch.writer.run_dir)
    first = run.anomalies[0]
    print(f"first anomaly: step {first.step}, module {first.module!r} ({first.module_type}), "
          f"{first.phase} {first.role}: {first.nan} NaN")  # fmt: skip
    print(first.message)
    print("flight recorder:", [s.path for s in run.snapshots])
    return first.step, first.module


if __name__ == "__main__":
    main()
