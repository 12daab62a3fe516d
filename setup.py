"""Build of the optional C kernel; everything else about the package is in pyproject.toml.

``vizdebug._rowkernel`` computes the PyTorch statistics worker's rows without the GIL
(vizdebug/_rowkernel.c). It is optional: where no C compiler is at hand the package installs
without it, and the worker computes the same rows with TorchScript, more slowly.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "vizdebug._rowkernel",
            ["vizdebug/_rowkernel.c"],
            # no fused multiply-add: the histogram edges must round as numpy.linspace's do
            extra_compile_args=["-O3", "-ffp-contract=off", "-std=gnu11"],
            optional=True,
        )
    ]
)
