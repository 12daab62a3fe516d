"""The loss handed to ``watch.step(loss=...)``: a non-finite loss is an anomaly of its own.

The sentinel checks what the watched model computes. A loss can be non-finite while every
module output and gradient stayed finite: computed outside the model (``log(0)`` in a custom
loss, a division by a zero count), or from outputs whose non-finite part no gradient reached.
Stored only as a NaN scalar, that went unnoticed; now it is reported as an anomaly (phase
``other``, role ``loss``), unless the sentinel already traced a finding at that step, whose
message names the module.

A CPU loss is read at once (no device sync). Any other loss is reduced to a flag on its device
and read at the next step's check, which reads the device once anyway.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from ..adapters import NonFiniteWarning
from ..writer import Writer

__all__ = ["LossCheck"]


class LossCheck:
    """Reports non-finite losses passed to ``watch.step``.

    Args:
        writer: Where the anomaly goes.
        flagged_steps: Steps at which the sentinel reported a finding (shared, read only).
        on_anomaly: The watch's mode (``"warn"``/``"pause"`` warn, others log).
    """

    def __init__(self, writer: Writer, flagged_steps: set[int], on_anomaly: str | None) -> None:
        self.writer = writer
        self.flagged_steps = flagged_steps
        self.on_anomaly = on_anomaly
        self._pending: list[tuple[int, torch.Tensor]] = []
        self._reported = 0

    def seen(self, step: int, loss: Any) -> None:
        """Check the loss of ``step`` (a number or a tensor)."""
        if isinstance(loss, torch.Tensor):
            if not loss.dtype.is_floating_point or loss.numel() == 0:
                return
            if loss.is_cpu:
                self._check(step, loss)
            else:  # a device flag, read with the next step's check
                self._pending.append((step, loss.detach().sum()))
        elif isinstance(loss, float) and not math.isfinite(loss):
            self._report(step, loss, loss.__class__.__name__)

    def settle(self) -> None:
        """Read the device flags of earlier losses (the step's check reads the device anyway)."""
        pending, self._pending = self._pending, []
        for step, flag in pending:
            value = float(flag)
            if not math.isfinite(value):
                self._report(step, value, "tensor")

    def _check(self, step: int, loss: torch.Tensor) -> None:
        loss = loss.detach()
        value = float(loss.sum()) if loss.numel() > 1 else float(loss)
        if not math.isfinite(value):
            self._report(step, value, "tensor")

    def _report(self, step: int, value: float, what: str) -> None:
        if step in self.flagged_steps:
            return  # the sentinel traced this step's value to its module already
        kind = "nan" if math.isnan(value) else "inf"
        self._reported += 1
        message = (
            f"step {step}: the loss passed to watch.step() is {value} while the step's check "
            "found the watched model's outputs and gradients finite: it was computed outside "
            "the watched modules (the loss function: log of 0, a division by zero) or from "
            "values no gradient reached"
        )
        nan = int(kind == "nan")
        self.writer.anomaly(
            kind, step=step, phase="other", role="loss", message=message, nan=nan,
            posinf=int(value == math.inf), neginf=int(value == -math.inf),
        )  # fmt: skip
        if self.on_anomaly in ("warn", "pause"):
            warnings.warn(message, NonFiniteWarning, stacklevel=4)
