"""Finiteness checks for the NaN/Inf sentinel: read now on CPU, reduced on the device elsewhere.

A CPU tensor in a dtype the C kernel reads (:mod:`vizdebug._rowkernel`) is checked at once,
from its exponent bits: no torch dispatch, no result tensor, and the GIL kept for short scans
(every torch operation lets go of it, and a statistics worker or writer thread waiting for it
then holds the training thread back). Anything else (a CUDA tensor, float8, a strided view,
a build without the kernel) gets a flag on its device, read at the end of the step.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import torch

try:
    from .. import _rowkernel
except ImportError:  # built without a C compiler: every flag is a device reduction
    _rowkernel = None  # type: ignore[assignment]

__all__ = ["KERNEL_CODES", "Flag", "finite_flag", "is_ok", "scan"]

#: The kernel's dtype codes.
KERNEL_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}

#: A checked tensor: True or False when read at once (whether every value is finite), else a
#: 0-d tensor on its device that is finite whenever every value was (its sum).
Flag = torch.Tensor | bool

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _readable(t: torch.Tensor) -> bool:
    return (
        t.is_cpu
        and t.layout is torch.strided
        and t.dtype in KERNEL_CODES
        and t.is_contiguous()
        and _rowkernel is not None
    )


def finite_flag(t: torch.Tensor) -> Flag:
    """Whether every value of ``t`` is finite: checked now where the C kernel reads ``t``,
    else its sum (one pass, on its device, no host sync).

    NaN and Inf always propagate into a sum; the converse fails only when a sum of huge finite
    values overflows (in float32 for fp16/bf16 input), so callers confirm a non-finite tensor
    flag by counting. ``t`` may be empty (finite).
    """
    if _readable(t):
        spec = array("q", (t.data_ptr(), t.numel(), KERNEL_CODES[t.dtype]))
        return _rowkernel.nonfinite(spec, 1) < 0
    if t.dtype in _LOW_PRECISION:
        return t.sum(dtype=torch.float32)
    return t.sum()


def is_ok(flag: Flag) -> bool:
    """Whether a flag says finite (a host read for a tensor flag: after detection only)."""
    if isinstance(flag, bool):
        return flag
    return bool(torch.isfinite(flag).item())


def scan(tensors: Sequence[torch.Tensor]) -> tuple[bool, list[torch.Tensor]]:
    """Check the tensors the C kernel reads, in one call.

    Returns:
        Whether one of them holds a NaN or an Inf, and the tensors it could not read (for a
        reduction on their device).
    """
    specs = array("q")
    rest: list[torch.Tensor] = []
    for t in tensors:
        if _readable(t):
            specs.extend((t.data_ptr(), t.numel(), KERNEL_CODES[t.dtype]))
        else:
            rest.append(t)
    count = len(specs) // 3
    return bool(count) and _rowkernel.nonfinite(specs, count) >= 0, rest
