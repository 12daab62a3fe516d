"""The step's loss on Keras's torch backend: a non-finite loss the sentinel did not trace.

The torch adapter's sentinel checks what the model computes. A loss can be non-finite while
every layer output and gradient stayed finite (a loss function dividing by zero, outputs whose
non-finite part no gradient reached). The TensorFlow backend checks the loss as a site of its
own (module ``""``, type ``loss``, role ``loss``); this does the same after the step's check,
unless the sentinel already reported a finding at that step (whose message names the layer).
"""

from __future__ import annotations

from typing import Any

import torch

from ..torch.finite import finite_flag, is_ok
from ..torch.report import Reporter
from ..torch.sentinel import Finding, Site, count_nonfinite

__all__ = ["StepLoss"]


class StepLoss:
    """Keeps the loss of the step under way and checks it after the step's NaN/Inf check.

    Args:
        reporter: Reports the finding (and knows the steps that have one already).
    """

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self._loss: torch.Tensor | None = None
        self._step = 0

    def seen(self, step: int, loss: Any) -> None:
        """Keep the loss ``compute_loss`` returned at ``step`` (a reference, no read)."""
        if isinstance(loss, torch.Tensor) and loss.dtype.is_floating_point and loss.numel():
            self._loss, self._step = loss.detach(), step

    def settle(self) -> None:
        """Check the kept loss (called by the step's check, which reads the device anyway)."""
        loss, self._loss = self._loss, None
        step = self._step
        if loss is None or step in self.reporter.flagged_steps or is_ok(finite_flag(loss)):
            return
        nan, pos, neg = count_nonfinite(loss)
        if not (nan or pos or neg):
            return
        kind = "nan" if nan or not (pos or neg) else "inf"
        message = (
            f"step {step}: first non-finite value ({kind}) in the forward pass: the loss "
            f"[{nan} NaN, {pos} +Inf, {neg} -Inf]; every layer output and gradient the step's "
            "check read was finite: the loss function made it (log of 0, a division by zero) "
            "or no gradient reached the non-finite part of the outputs."
        )
        site = Site("", "loss", "forward", "loss")
        self.reporter.report(Finding(kind, site, "loss", message, nan, pos, neg, step), step)
