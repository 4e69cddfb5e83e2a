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

Numbers (``bench/bench_sampler.py``: ``small`` preset, batch 8, 64-token prompts, 128
new tokens, one thread, a shared 2-core AMD EPYC): compiling takes ~18 s with inductor's
on-disk cache cold and ~1 s warm; a run is 1-22% faster than eager over four bench runs
(1.69-2.18x ``model.generate`` against 1.56-1.78x). One compiled step at a fixed slot
was 27% faster than the eager one; ~87% of it is the matmuls and the attention, the
kernels eager runs too. Off by default: the gain is small next to a cold compile, and
Inductor on CPU needs a C++ compiler.

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
    try:  # (torch.compile itself raises where dynamo is unsupported, e.g. a new Python)
        if _compiled is None:
            _compiled = torch.compile(step, dynamic=False)
        torch._dynamo.mark_dynamic(slots, 0)
        logits = _compiled(owner, tokens, slots, cos, sin)
    except Exception as e:  # noqa: BLE001 (inductor errors share no base; any: eager)
        failure = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        warnings.warn(f"torch.compile of the decode step failed ({failure}); "
                      "decoding eagerly", RuntimeWarning, stacklevel=3)
        return None
    steps += 1
    return logits
