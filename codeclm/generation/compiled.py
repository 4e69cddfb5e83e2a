"""``torch.compile`` of the decode step, opt-in (``KVCacheLM(..., compile=True)``).

What it compiles: :meth:`KVCacheLM.step_at <codeclm.generation.forward.KVCacheLM.step_at>`,
the step where every row feeds one token at the same cache slot (no mask: the step of
an unconstrained batch, and of every batch-1 run). Inductor fuses each layer's norm,
RoPE + cache write, and SiLU-times-up into one C++ loop each and folds the residual adds
into ``addmm``; the matmuls and the attention stay the same ATen kernels as in eager.
The key length is the one dynamic size (marked on ``slots``), so a run compiles once per
(model shape, batch size) and process; every :class:`KVCacheLM` over the same shapes
reuses that graph (dynamo guards on shapes and dtypes, not on the instance). Steps with
rows at different slots, and steps at slot 0 (a one-token key length would be
specialised), run eagerly.

Numbers (``small`` preset, batch 8, 64-token prompts, 128 new tokens, one thread, a
shared 2-core AMD EPYC): the decode loop is ~10% faster than eager; compiling takes
~15-30 s cold and ~5-10 s with inductor's on-disk cache warm (``bench/bench_sampler.py``
reports both next to the ratio). Off by default: compile time is larger than a typical
run saves, and Inductor on CPU needs a C++ compiler.

Fallback: if compiling or running the compiled step raises (no C++ compiler, an
unsupported torch), a :class:`RuntimeWarning` says why, the step runs eagerly, and no
later :class:`KVCacheLM` in the process tries again. The compiled step's logits equal
the eager ones to float rounding (~1e-6), not bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

#: why compiling failed in this process (None: not failed); later steps do not retry
failure: str | None = None
#: decode steps run through the compiled graph in this process
steps = 0
_compiled: Callable | None = None


def reset() -> None:
    """Forget the compiled step, a failure and dynamo's in-memory caches (the next
    compiled step compiles again: from inductor's on-disk cache where it has the graph)."""
    global _compiled, failure, steps
    _compiled, failure, steps = None, None, 0
    torch._dynamo.reset()


def compiled_call(step: Callable, owner, tokens: torch.Tensor, slots: torch.Tensor,
                  cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor | None:
    """``step(owner, tokens, slots, cos, sin)`` through one process-wide ``torch.compile``
    wrapper (``slots`` ``[n]``, n >= 2, the dynamic size). Returns the logits, or None
    when compiling has failed in this process (the caller then runs ``step`` eagerly)."""
    global _compiled, failure, steps
    if failure is not None:
        return None
    if _compiled is None:
        _compiled = torch.compile(step, dynamic=False)
    torch._dynamo.mark_dynamic(slots, 0)
    try:
        logits = _compiled(owner, tokens, slots, cos, sin)
    except Exception as e:  # noqa: BLE001 (inductor errors share no base; any: eager)
        failure = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        warnings.warn(f"torch.compile of the decode step failed ({failure}); "
                      "decoding eagerly", RuntimeWarning, stacklevel=3)
        return None
    steps += 1
    return logits
