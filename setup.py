"""The native kernels of the CPU decode step (``codeclm/_native.c``: plain C and the
Python headers). Everything else about the package is in ``pyproject.toml``; this file
only adds the extension (setuptools' ``ext-modules`` table in ``pyproject.toml`` is
still marked experimental and warns at every install).

``optional=True``: where no C compiler is found the build goes on without the extension
and the sampler runs torch's kernels (``codeclm/generation/native.py``)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("codeclm._native", sources=["codeclm/_native.c"],
                             extra_compile_args=["-O3", "-Wno-psabi"], optional=True)])
