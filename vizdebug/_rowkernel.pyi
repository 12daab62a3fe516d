"""Statistics rows of CPU tensors in one call without the GIL (see vizdebug/_rowkernel.c)."""

from array import array

def rows(specs: array[int] | bytes | memoryview, out: int, count: int, bins: int) -> None:
    """Write ``count`` rows of ``12 + bins`` float64 values to the matrix at address ``out``."""

def nonfinite(specs: array[int] | bytes | memoryview, count: int) -> int:
    """The index of the first of ``count`` tensors holding a NaN or an Inf, or -1."""
