"""Train a small model compiled with torch.compile, watched or not; print the weights' digest.

Run by tests/torch/test_torch_compile.py in a subprocess with ``TORCH_LOGS=recompiles``, so the
test reads dynamo's own recompile log. Usage: compile_train.py {bare,watch-first,compile-first}
LOGDIR [NAN_STEP]
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings

import torch
from torch import nn

import vizdebug
from vizdebug.torch import NonFiniteWarning


class Spike(nn.Module):
    """Identity, except at the step ``at`` holds (a data-dependent NaN the replay sees again)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("poison", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.poison


def main() -> None:
    mode, logdir = sys.argv[1], sys.argv[2]
    nan_step = int(sys.argv[3]) if len(sys.argv) > 3 else -1
    torch.manual_seed(0)
    spike = Spike()
    model = nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(inplace=True), spike, nn.Linear(16, 4)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    watch = None
    if mode == "watch-first":
        watch = vizdebug.watch(model, opt, logdir=logdir, every=3, first=1)
        run = torch.compile(model)
    else:
        run = torch.compile(model)
        if mode == "compile-first":
            watch = vizdebug.watch(run, opt, logdir=logdir, every=3, first=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWarning)
        for step in range(10):
            torch.manual_seed(100 + step)
            spike.poison.fill_(float("nan") if step == nan_step else 0.0)
            opt.zero_grad()
            loss = run(torch.randn(6, 8)).square().mean()
            loss.backward()
            opt.step()
            if watch is not None:
                watch.step(loss=loss)
    if watch is not None:
        watch.close()
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters()))
    print(json.dumps({"digest": digest.hexdigest()}))


if __name__ == "__main__":
    main()
