"""Statistics rows of many CPU tensors in one call that does not hold the GIL.

The statistics worker shares the interpreter with the training loop. Measured on the digits
CNN with everything recorded every step: computing each tensor's row with about ten torch and
numpy calls (:func:`~vizdebug.torch.devstats.cpu_row`) made the worker take and hand back the
GIL some twenty times per tensor, and the training thread, waiting for it after each of its own
kernels, ran 1.75x a bare step where it needed 1.2x with the worker's work removed. So the
worker hands every tensor it has queued to one call that releases the GIL:

- the C kernel ``vizdebug._rowkernel`` (built with the package wherever a C compiler is at
  hand): two passes over each tensor's memory, the first vectorised, no dispatch at all; a
  third of the TorchScript function's time on a Transformer step (5 ms of worker CPU a step
  where it took 17);
- else one TorchScript function, :func:`_rows`, which TorchScript runs in C++ with the GIL
  released, at twenty to thirty kernel dispatches and five to seven passes a tensor; it also
  serves the floating dtypes the kernel does not read (float8).

The arithmetic is :func:`cpu_row`'s: every statistic exact, the histogram of a tensor above
:data:`~vizdebug.stats.HIST_SAMPLE` elements binned from a fixed random sample over the exact
``[min, max]`` and scaled to integer counts that sum to the tensor's size. The kernel computes
the rows of tensors holding NaN or Inf itself (with exact histograms); the TorchScript function
marks them, and histograms of 256 bins or more, for the caller's general path.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from array import array
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch

from .. import yielding
from ..stats import COLUMNS, HIST_SAMPLE
from .devstats import cpu_row
from .finite import KERNEL_CODES

try:
    from .. import _rowkernel
except ImportError:  # built without a C compiler: TorchScript computes the same rows
    _rowkernel = None  # type: ignore[assignment]

__all__ = ["CpuBatch", "Flat", "rows_of"]

#: A contiguous 1-D tensor and the sizes of its consecutive parts, one row each (a flat copy of
#: parameters, :mod:`.flat`).
Flat = tuple[torch.Tensor, list[int]]

log = logging.getLogger("vizdebug")

_FALLBACK = -1.0  # column 0 of a row the script left to the caller's general path


def _rows(
    ts: list[torch.Tensor],
    samples: list[torch.Tensor | None],
    bins: int,
    buf32: torch.Tensor,
    buf64: torch.Tensor,
    idx: torch.Tensor,
) -> torch.Tensor:
    """The rows of ``ts`` (CPU float tensors); TorchScript-compatible.

    Every op costs a few microseconds of dispatch whatever its size, so small tensors take a
    path of about ten ops (the scalars read back in one ``tolist``, ``histc`` for the
    histogram) and the rows are assembled once at the end.
    """
    nan = float("nan")
    heads: list[list[float]] = []
    hists: list[torch.Tensor] = []
    empty = torch.zeros(bins, dtype=torch.float64)
    for i in range(len(ts)):
        x = ts[i].reshape(-1)
        n = x.numel()
        if n == 0:
            heads.append([0.0, 0.0, 0.0, 0.0, 0.0, nan, nan, nan, nan, 0.0, 0.0, 0.0])
            hists.append(empty)
            continue
        wide = x.dtype == torch.float16 or x.dtype == torch.bfloat16
        if wide:
            x = x.float()
        if n > 16384:  # two vectorized passes beat aminmax's one above ~16k elements
            low = torch.amin(x)
            high = torch.amax(x)
        else:
            mm = torch.aminmax(x)
            low = mm[0]
            high = mm[1]
        # zeros: x == 0 written as 0/1 floats into scratch and summed (a float sum of ones is
        # exact below 2^24 elements); count_nonzero branches per element and took 20x longer
        # on ReLU outputs (335 us for 65k elements, half of them zero)
        scratch = (buf64 if x.dtype == torch.float64 else buf32)[:n]
        ones = torch.eq(x, 0.0, out=scratch)
        zero_count = ones.sum() if n < 16777216 else ones.sum(dtype=torch.float64)
        total = x.sum(dtype=torch.float64) if wide else x.sum()
        # the sum of squares by BLAS: a third of vector_norm's time (same float32 accumulation,
        # the same overflow to inf for values beyond 1.8e19)
        squares = torch.dot(x, x)
        if wide or n >= 16777216:
            found = torch.stack(
                [low.double(), high.double(), total.double(), squares.double(), zero_count.double()]
            )
        else:  # float32 or float64 all along: a count below 2^24 is exact in either
            found = torch.stack([low, high, total, squares, zero_count])
        scalars: list[float] = found.tolist()
        lo = scalars[0]
        hi = scalars[1]
        if bins >= 256 or not (math.isfinite(lo) and math.isfinite(hi)):
            # NaN or Inf (they propagate into min and max): the caller's general path
            heads.append([-1.0, 0.0, 0.0, 0.0, 0.0, nan, nan, nan, nan, 0.0, 0.0, 0.0])
            hists.append(empty)
            continue
        mean = scalars[2] / n
        l2 = math.sqrt(scalars[3])
        zeros = scalars[4]
        square = scalars[3] / n
        if (not wide) and square - mean * mean > 0.1 * square:
            # well conditioned: the variance from the two sums loses at most one digit
            std = math.sqrt(square - mean * mean)
        else:
            std = float(torch.linalg.vector_norm(x.double() - mean)) / math.sqrt(n)
        hlo = lo
        hhi = hi
        if lo == hi:
            hlo = lo - 0.5
            hhi = hi + 0.5
        if n <= 4096 and not wide:
            counts = torch.histc(x, bins, hlo, hhi).double()
        else:
            sample = samples[i]
            y = x if sample is None else x.index_select(0, sample)
            m = y.numel()
            if wide:
                y = y.double()  # coarse values sit on bin edges: bin in float64 as numpy does
                scaled = buf64[:m]
            else:
                scaled = (buf64 if x.dtype == torch.float64 else buf32)[:m]
            # y - lo >= 0 as lo is the minimum: only the maximum needs clamping into the
            # last bin (numpy's closed last edge); inner edges go to the upper bin as in numpy
            torch.sub(y, hlo, out=scaled).mul_(bins / (hhi - hlo)).clamp_(max=bins - 1)
            positions = idx[:m]
            positions.copy_(scaled)
            counts = torch.bincount(positions, minlength=bins).double()
            if m != n:
                # scaled to integers summing to n: floors, then +1 for the largest remainders
                exact = counts * (n / m)
                counts = exact.floor()
                short = n - int(counts.sum())
                if short > 0:
                    order = torch.argsort(counts - exact)
                    counts[order[:short]] += 1.0
        heads.append([float(n), 0.0, 0.0, 0.0, zeros, lo, hi, mean, std, l2, hlo, hhi])
        hists.append(counts)
    if len(heads) == 0:
        return torch.zeros((0, 12 + bins), dtype=torch.float64)
    return torch.cat([torch.tensor(heads, dtype=torch.float64), torch.stack(hists)], 1)


def _compile() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch 2.13 calls torch.jit.script deprecated
            return torch.jit.script(_rows)
    except Exception as exc:  # a torch without TorchScript: the same code, run eagerly
        log.info("vizdebug: TorchScript unavailable (%r); CPU statistics hold the GIL", exc)
        return _rows


class CpuBatch:
    """Scratch buffers and samples of one worker thread; :meth:`rows` does the work."""

    _lock = threading.Lock()
    _script: Any = None

    def __init__(self, *, native: bool = True) -> None:
        self._native = _rowkernel if native else None
        self._buf32 = torch.empty(0)
        self._buf64 = torch.empty(0, dtype=torch.float64)
        self._idx = torch.empty(0, dtype=torch.uint8)
        self._samples: dict[int, torch.Tensor] = {}
        #: Per flat layout (sizes, element size): its parts' specs relative to the tensor's
        #: address, the sizes list (whose id is the key) and the samples the specs point into.
        self._layouts: dict[
            tuple[int, int], tuple[npt.NDArray[np.int64], list[int], list[torch.Tensor]]
        ] = {}

    @classmethod
    def script(cls) -> Any:
        """The compiled function (compiled once per process, on first use)."""
        with cls._lock:
            if cls._script is None:
                cls._script = _compile()
            return cls._script

    def rows(self, items: Sequence[torch.Tensor | Flat], bins: int) -> torch.Tensor:
        """One float64 row per tensor (``len(COLUMNS) + bins`` values), one per part of a
        :data:`Flat`.

        Args:
            items: CPU floating-point tensors of any shape (read without grad mode), or flat
                tensors with the sizes of their parts.
            bins: Histogram bins.
        """
        if self._native is not None:
            try:
                return self._kernel_rows(self._native, items, bins)
            except KeyError:  # a dtype the kernel does not read (float8): TorchScript
                pass
        tensors: list[torch.Tensor] = []
        for item in items:
            if isinstance(item, tuple):
                tensors += torch.split(item[0], item[1])
            else:
                tensors.append(item)
        unique, where = _distinct(tensors)
        out = self._scripted_rows(unique, bins)
        if len(unique) < len(tensors):
            out = out[torch.tensor(where)]
        for i in (out[:, 0] == _FALLBACK).nonzero().flatten().tolist():
            out[i] = torch.tensor(cpu_row(tensors[i], bins=bins), dtype=torch.float64)
        return out

    def _kernel_rows(
        self, native: Any, items: Sequence[torch.Tensor | Flat], bins: int
    ) -> torch.Tensor:
        """The rows by the C kernel: two passes over each tensor's memory, no dispatch.

        One loop of attribute reads per tensor (the worker holds the GIL meanwhile, which the
        training thread waits for), and none per part of a flat tensor (see :meth:`_parts`);
        views of one storage (see :func:`_distinct`) get a copy of the first one's row, made by
        the kernel.
        """
        specs = array("q")
        held: list[torch.Tensor] = []  # contiguous copies live until the kernel returns
        seen: dict[tuple[int, int, int], int] = {}
        codes, samples = KERNEL_CODES, self._samples
        tensors: list[torch.Tensor] = []  # one per row (a flat tensor once per part)
        for t in yielding.offering(items):
            if isinstance(t, tuple):
                flat, sizes = t
                code = codes[flat.dtype]
                if not flat.is_contiguous():
                    flat = flat.contiguous()
                    held.append(flat)
                parts = self._parts(sizes, flat.element_size()).copy()
                parts[:, 0] += flat.data_ptr()
                parts[:, 2] = code
                specs.frombytes(parts.tobytes())
                tensors += [flat] * len(sizes)
                continue
            i = len(tensors)
            tensors.append(t)
            key = (t.data_ptr(), t.numel(), codes[t.dtype])
            contiguous = t.is_contiguous()
            at = seen.get(key)
            if at is not None and contiguous and tensors[at].is_contiguous():
                specs.extend((0, 0, 0, 0, 0, at))
                continue
            seen[key] = i
            ptr, n, code = key
            if not contiguous or t.is_neg():
                t = t.contiguous().resolve_neg()
                held.append(t)
                ptr = t.data_ptr()
            if n <= HIST_SAMPLE:
                specs.extend((ptr, n, code, 0, 0, -1))
            else:
                sample = samples.get(n)
                if sample is None:
                    sample = cast(torch.Tensor, self._sample(n))
                specs.extend((ptr, n, code, sample.data_ptr(), HIST_SAMPLE, -1))
        out = torch.empty((len(tensors), len(COLUMNS) + bins), dtype=torch.float64)
        native.rows(specs, out.data_ptr(), len(tensors), bins)
        return out

    def _parts(self, sizes: list[int], itemsize: int) -> npt.NDArray[np.int64]:
        """The kernel specs of a flat layout's parts, one row of six each, with addresses
        relative to the tensor's and no dtype code (worked out once per layout: every
        recorded step copies the same parameters)."""
        key = (id(sizes), itemsize)
        layout = self._layouts.get(key)
        if layout is None or layout[1] is not sizes:
            spec: list[tuple[int, ...]] = []
            keep: list[torch.Tensor] = []  # the samples the specs point into stay alive
            offset = 0
            for n in sizes:
                sample = self._sample(n)
                if sample is None:
                    spec.append((offset, n, 0, 0, 0, -1))
                else:
                    keep.append(sample)
                    spec.append((offset, n, 0, sample.data_ptr(), HIST_SAMPLE, -1))
                offset += n * itemsize
            if len(self._layouts) >= 64:
                self._layouts.clear()
            table = np.array(spec, dtype=np.int64).reshape(-1, 6)
            layout = self._layouts[key] = (table, sizes, keep)
        return layout[0]

    def _scripted_rows(self, unique: list[torch.Tensor], bins: int) -> torch.Tensor:
        """The rows by TorchScript (no C kernel built, or a dtype it does not read)."""
        # reused: fresh large CPU tensors come from mmap and pay page faults on every use
        need = max((t.numel() for t in unique), default=0)
        if self._buf32.numel() < need:
            size = max(need, 1 << 16)
            self._buf32 = torch.empty(size)
            self._idx = torch.empty(size, dtype=torch.uint8)
        wide = (torch.float64, torch.float16, torch.bfloat16)
        need = max((t.numel() for t in unique if t.dtype in wide), default=0)
        if self._buf64.numel() < need:  # only float64, float16 and bfloat16 tensors use it
            self._buf64 = torch.empty(max(need, 1 << 16), dtype=torch.float64)
        samples = [self._sample(t.numel()) for t in unique]
        # no_grad: the hooks hand over tensors without detaching them; no optimization passes
        # (a thread-local switch): they specialise graphs for ops that are all kernels here,
        # and held 14 MB (peak RSS of the digits CNN run, 360 -> 346 MB)
        no_passes = torch.jit.optimized_execution(False)  # type: ignore[attr-defined]
        with torch.no_grad(), no_passes:
            out: torch.Tensor = self.script()(
                unique, samples, bins, self._buf32, self._buf64, self._idx
            )
        return out

    def _sample(self, n: int) -> torch.Tensor | None:
        """Sorted positions of the fixed random sample of ``n`` elements (None: all of them).

        Drawn once per size with a private generator (training's RNG stream is untouched);
        random rather than strided, so no channel, row or border pattern biases it.
        """
        if n <= HIST_SAMPLE:
            return None
        got = self._samples.get(n)
        if got is None:
            gen = torch.Generator().manual_seed(n)
            got = torch.randperm(n, generator=gen)[:HIST_SAMPLE].sort().values
            if len(self._samples) >= 64:
                self._samples.clear()
            self._samples[n] = got
        return got


def _distinct(tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[int]]:
    """The tensors with distinct contents, and where each of ``tensors`` is among them.

    Contiguous tensors that start at the same address with as many elements of one dtype hold
    the same values in the same order: a container module's output is its last child's, a
    ``Flatten`` output and its gradient are views of their neighbours'. Their row is computed
    once.
    """
    seen: dict[tuple[int, int, torch.dtype], int] = {}
    unique: list[torch.Tensor] = []
    where: list[int] = []
    for t in tensors:
        key = (t.data_ptr(), t.numel(), t.dtype)
        at = seen.get(key)
        # contiguity is asked only of a repeated key (x and x.t() share theirs)
        if at is None or not (t.is_contiguous() and unique[at].is_contiguous()):
            at = seen[key] = len(unique)
            unique.append(t)
        where.append(at)
    return unique, where


def rows_of(tensors: list[torch.Tensor], bins: int) -> torch.Tensor:
    """The statistics rows of CPU float tensors (a convenience for tests and one-off use)."""
    return CpuBatch().rows(tensors, bins)
