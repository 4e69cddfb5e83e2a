"""The skinny matrix product of the CPU decode step: ``codeclm._native`` from Python.

A decode step at batch ``M <= 8`` multiplies ``M`` rows by every weight matrix once, so
on a CPU the step is bound by how fast the weights stream from memory. MKL's sgemm at
so few rows streams them at well under the machine's read bandwidth; the kernel in
``codeclm/_native.c`` reads each weight once, in order, from a packed layout (made once
per weights by :func:`pack`) and is ~2x faster on the ``small`` preset's matrices at
batch 8 (``bench/bench_sampler.py`` has the numbers).

It is a C extension built by ``pip install`` (plain C and the Python headers, nothing
else; optional: where no compiler is found the build goes on without it) and used only
where it pays: float32 CPU tensors, 1 to :data:`MAX_ROWS` rows, one torch thread (the
kernel is single-threaded; with more threads MKL's parallel sgemm is used).
``CODECLM_NATIVE=0`` in the environment turns it off (:func:`available`).
"""

from __future__ import annotations

import os

import torch

try:
    from .. import _native
except ImportError:  # not built (no C compiler at install): torch.mm does the work
    _native = None

#: the most rows one call takes (a decode step at batch <= 8)
MAX_ROWS = 8
#: columns per packed block (one 8-float vector per row in the kernel)
BLOCK = 8
ENV = "CODECLM_NATIVE"


def available() -> bool:
    """Whether the kernel is built and not turned off (``CODECLM_NATIVE=0``)."""
    return _native is not None and os.environ.get(ENV, "1") != "0"


def isa() -> str | None:
    """The instruction set the kernel runs with (``"avx2+fma"``, ``"generic"``), or None
    when it is not built."""
    return None if _native is None else _native.ISA


def pack(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` ``[K, N]`` (a projection as ``x @ weight``) in the kernel's layout:
    ``[ceil(N / 8), K, 8]`` float32, contiguous, each block of 8 output columns in one
    run of memory, the last block padded with zeros."""
    K, N = weight.shape
    blocks = -(-N // BLOCK)
    padded = torch.zeros(K, blocks * BLOCK, dtype=torch.float32)
    padded[:, :N] = weight
    return padded.view(K, blocks, BLOCK).transpose(0, 1).contiguous()


def usable(x: torch.Tensor) -> bool:
    """Whether :func:`skinny_mm` takes ``x`` and it pays now: a matrix of 1 to
    :data:`MAX_ROWS` rows with contiguous rows, one torch thread. (That the kernel is
    available, and ``x`` float32 on the CPU, the caller knows from having packed
    weights: :func:`pack`.)"""
    return (x.dim() == 2 and x.shape[0] <= MAX_ROWS and x.stride(1) == 1
            and torch.get_num_threads() == 1)


def skinny_mm(x: torch.Tensor, packed: torch.Tensor, n: int,
              add: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W (+ add)`` with ``W`` ``[K, n]`` given packed (:func:`pack`): ``x`` ``[M, K]``
    float32 (rows contiguous, any row stride; :func:`usable`), ``add`` ``[M, n]``.
    Returns a new ``[M, n]`` float32 tensor."""
    M, K = x.shape
    out = torch.empty(M, n)
    if packed.shape[1] != K or packed.shape[0] * BLOCK < n:
        raise ValueError(f"packed weight {tuple(packed.shape)} does not fit x {tuple(x.shape)}"
                         f" and {n} columns")
    if add is None:
        a = 0
    elif add.shape == out.shape and add.is_contiguous() and add.dtype == out.dtype:
        a = add.data_ptr()
    else:
        raise ValueError(f"add {tuple(add.shape)} is not a contiguous [{M}, {n}] float32")
    _native.skinny_mm(x.data_ptr(), x.stride(0), packed.data_ptr(), a, out.data_ptr(), M, K, n)
    return out
