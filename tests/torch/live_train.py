"""A real training process for the live-debugger tests: the digits CNN with vizdebug.watch.

Usage: python live_train.py RUN_DIR STEPS NAN_STEP [RESUME_TIMEOUT]
At step NAN_STEP a NaN is put into fc1's output after fc1 returned, so module "fc2" is the
first to see it (in its input). Prints "ready" once watching, and
"done <steps>" at the end.
"""

from __future__ import annotations

import sys

import torch
from sklearn.datasets import load_digits
from torch import nn

import vizdebug

run_dir, steps, nan_step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
torch.manual_seed(0)
torch.set_num_threads(1)
digits = load_digits()
x = torch.tensor(digits.images[:256], dtype=torch.float32).unsqueeze(1) / 16.0
y = torch.tensor(digits.target[:256])


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.flat = nn.Flatten()
        self.fc1 = nn.Linear(8 * 64, 32)
        self.fc2 = nn.Linear(32, 10)
        self.step = 0

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        h = self.fc1(self.flat(self.act(self.conv(inp))))
        if self.step == nan_step:
            h = h.clone()
            h[0, 0] = float("nan")
        return self.fc2(h)


model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.05)
watch = vizdebug.watch(model, opt, logdir=run_dir, live_timeout=timeout, on_anomaly="log")
print("ready", flush=True)
for step in range(steps):
    model.step = step
    idx = torch.arange(step * 16, step * 16 + 16) % len(x)
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
    watch.step(loss=loss)
watch.close()
print(f"done {steps}", flush=True)
