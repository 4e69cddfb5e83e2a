"""The C kernels of the CPU decode step: ``codeclm._native`` from Python.

A decode step at batch ``M <= 8`` multiplies ``M`` rows by every weight matrix once and
attends one query per row and head to the cache, so on a CPU it is bound by how fast
the weights and the cache stream from memory. MKL's sgemm at so few rows, and SDPA for
one query, stream them well under the machine's read bandwidth. Two kernels in
``codeclm/_native.c``:

- :func:`skinny_mm`: ``x @ W (+ add)`` reading each weight once, in order, from a packed
  layout (made once per weights by :func:`pack`); ~2x MKL on the ``small`` preset's
  matrices at batch 8, and faster at 1 row for matrices of ~40k weights and more.
- :func:`attend`: the decode attention (grouped heads; each row's own slot count
  instead of a mask; a vectorised exp); ~2x SDPA at 1 and 8 rows.

They are a C extension built by ``pip install`` (plain C and the Python headers,
nothing else; optional: where no compiler is found the build goes on without it) and
are used by :class:`~codeclm.generation.forward.KVCacheLM` only where they pay: float32
CPU models, one torch thread (the kernels are single-threaded; with more threads
torch's parallel kernels run), not under ``torch.compile``. ``CODECLM_NATIVE=0`` in the
environment turns them off (:func:`available`; read when a ``KVCacheLM`` is made);
``CODECLM_NATIVE_ISA=generic`` keeps their baseline build on an AVX2 machine (what other
CPUs run; the tests check it too). ``bench/bench_sampler.py`` measures them against
``torch.mm``/SDPA in one run.
"""

from __future__ import annotations

import os

import torch

try:
    from .. import _native
except ImportError:  # not built (no C compiler at install): torch's kernels do the work
    _native = None

#: the most rows one call takes (a decode step at batch <= 8)
MAX_ROWS = 8
#: columns per packed block (one 8-float vector per row in the kernel)
BLOCK = 8
ENV = "CODECLM_NATIVE"


def available() -> bool:
    """Whether the kernels are built and not turned off (``CODECLM_NATIVE=0``)."""
    return _native is not None and os.environ.get(ENV, "1") != "0"


def isa() -> str | None:
    """The instruction set the kernels run with (``"avx2+fma"``, ``"generic"``), or None
    when they are not built."""
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
    if x.dtype != torch.float32 or not x.is_cpu or x.stride(1) != 1:
        raise ValueError(f"x must be a float32 CPU matrix with contiguous rows, not {x.dtype} "
                         f"on {x.device} with strides {x.stride()}")
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


def attention_usable(head_dim: int) -> bool:
    """Whether :func:`attend` takes heads of ``head_dim`` and it pays now: a multiple of 8
    up to 128, one torch thread (the kernel is single-threaded)."""
    return head_dim % BLOCK == 0 and head_dim <= 128 and torch.get_num_threads() == 1


def attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
           lengths: torch.Tensor | None = None) -> torch.Tensor:
    """One query per row and head against a KV cache (a decode step's attention, the
    same as ``scaled_dot_product_attention`` with its default scale):

    ``q`` ``[B, Hq, D]``, ``keys`` and ``values`` ``[B, Hkv, n, D]`` (views of the
    cache: rows of ``D`` contiguous floats, ``Hkv`` dividing ``Hq``), all float32 on the
    CPU. Row ``b`` attends to its slots ``< lengths[b]`` (int64 ``[B]``, each 1..n), or
    to all ``n`` without ``lengths``. Returns ``[B, Hq * D]`` (heads side by side, as
    the output projection takes them)."""
    B, Hq, D = q.shape
    kb, Hkv, n, kd = shape = keys.shape
    qs, ks = q.stride(), keys.stride()  # (one call each: these checks run every layer)
    if (qs[2] != 1 or qs[1] != D or ks[3] != 1 or ks[2] != D or kb != B or kd != D
            or values.stride() != ks or values.shape != shape):
        raise ValueError(f"attend: q {tuple(q.shape)} / keys {tuple(keys.shape)} are not "
                         "laid out as a KV cache")
    if not (q.dtype == keys.dtype == values.dtype == torch.float32
            and q.is_cpu and keys.is_cpu and values.is_cpu):
        raise ValueError("attend: q, keys and values must be float32 CPU tensors")
    if lengths is not None and (lengths.dtype != torch.int64 or lengths.shape != (B,)
                                or not lengths.is_contiguous() or not lengths.is_cpu):
        raise ValueError("attend: lengths must be a contiguous int64 [B]")
    out = torch.empty(B, Hq * D)
    _native.attend(q.data_ptr(), qs[0], keys.data_ptr(), values.data_ptr(), ks[0], ks[1],
                   0 if lengths is None else lengths.data_ptr(), n, out.data_ptr(), B, Hq, Hkv,
                   D, D ** -0.5)
    return out
