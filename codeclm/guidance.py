"""Classifier-free guidance as a KV-cache forward: B rows outside, 2B cache rows inside.

:class:`GuidedLM` has the interface :class:`codeclm.generation.session.Session` uses of a
:class:`codeclm.generation.forward.KVCacheLM` (``prefill``, ``decode``, ``copy_row``,
``batch_size``, ``max_length``, ``vocab_size``, ``device``), so a Session, its grammar
masks, unit verdicts and rollback run unchanged on guided logits. Presented row ``r`` is
held in two cache rows: ``2r`` (conditional: the prompt with its class token) and
``2r + 1`` (unconditional: the same tokens with every class token replaced by
``<class:null>``). Both rows always hold the same number of tokens at the same
positions, so the Session's per-row bookkeeping serves both:

* ``prefill(row, ids, start)`` fills both rows; ``copy_row`` copies both;
* ``decode(tokens [B], positions)`` feeds each token to both rows (``[2B]`` in one
  batched step) and returns the guided logits ``u + S * (c - u)`` ``[B, V]`` (float32),
  *before* the Session applies its bans, min-length, grammar masks, temperature, top-k
  and top-p, so every constraint acts on the guided distribution;
* rollback, restart and context refills need nothing more: a Session rolls a row back by
  lowering how many of its tokens are fed (the next ``decode`` overwrites those slots in
  both cache rows) and restarts it with ``prefill``.

``S = 1`` returns the conditional logits exactly and ``S = 0`` the unconditional ones
(no arithmetic), so guided sampling at those scales equals plain sampling with the class
or with the null class token for token (up to the rounding of a batch twice as large).
The cost per step is one decode of 2B rows instead of B (``bench/bench_guidance.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from .class_args import DEFAULT_CFG_SCALE, check_scale
from .errors import ConfigError
from .generation.forward import KVCacheLM


class GuidedLM:
    """A guided forward over ``model`` (LlamaWeights / LlamaForCausalLM, or a
    :class:`KVCacheLM` with at least ``2 * batch_size`` rows).

    ``class_ids``: the token ids of every class token (each becomes ``null_id`` in the
    unconditional rows); ``scale``: the guidance scale S >= 0.
    """

    def __init__(self, model, batch_size: int, scale: float, class_ids: Iterable[int],
                 null_id: int, max_length: int | None = None):
        self.inner = (model if isinstance(model, KVCacheLM)
                      else KVCacheLM(model, 2 * batch_size, max_length))
        if self.inner.batch_size < 2 * batch_size:
            raise ConfigError(f"a guided batch of {batch_size} needs {2 * batch_size} cache "
                              f"rows; the cache holds {self.inner.batch_size}")
        self.scale = check_scale(scale)
        self.batch_size = batch_size
        self.max_length = self.inner.max_length
        self.vocab_size = self.inner.vocab_size
        self.device, self.dtype = self.inner.device, self.inner.dtype
        #: token id -> the id fed to the unconditional row (class tokens -> null)
        self._uncond = torch.arange(self.vocab_size, device=self.device)
        ids = torch.tensor(sorted(set(class_ids)), dtype=torch.long, device=self.device)
        self._uncond[ids] = null_id

    def guide(self, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        """``u + S (c - u)`` (exactly ``c`` at S = 1 and ``u`` at S = 0)."""
        if self.scale == 1.0:
            return cond.contiguous()
        if self.scale == 0.0:
            return uncond.contiguous()
        return torch.lerp(uncond, cond, self.scale)

    def prefill(self, row: int, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Prefill presented row ``row`` (both cache rows) with ``ids`` ``[S]`` from slot
        ``start``; returns the guided logits ``[V]`` after the last token."""
        ids = ids.to(self.device)
        c = self.inner.prefill(2 * row, ids, start)
        u = self.inner.prefill(2 * row + 1, self._uncond[ids], start)
        return self.guide(c, u)

    def copy_row(self, dst: int, src: int, n: int) -> None:
        """Copy presented row ``src``'s first ``n`` slots into row ``dst`` (both halves)."""
        self.inner.copy_row(2 * dst, 2 * src, n)
        self.inner.copy_row(2 * dst + 1, 2 * src + 1, n)

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
        """One token per presented row (``tokens`` ``[B]`` at ``positions``) -> guided
        logits ``[B, V]`` (float32); runs one decode step of ``2B`` cache rows."""
        tokens = tokens.to(self.device)
        both = torch.stack([tokens, self._uncond[tokens]], 1).reshape(-1)  # [2B]: c0 u0 c1 u1
        logits = self.inner.decode(both, [p for p in positions for _ in (0, 1)])
        pair = logits.view(tokens.shape[0], 2, -1)
        return self.guide(pair[:, 0], pair[:, 1])


#: guidance scale when --class is given without --cfg-scale
def conditioned_forward(weights, tokenizer, batch_size: int, class_name: str | None = None,
                        cfg_scale: float | None = None, max_length: int | None = None):
    """The forward a generator runs and the class token its prompts get after ``<s>``:
    ``(KVCacheLM or GuidedLM, class token id or None)``.

    No ``class_name``: an unconditional :class:`KVCacheLM` (``cfg_scale`` is then an
    error). With one: its class token (:class:`codeclm.labels.LabelError` for an unknown
    class, :class:`codeclm.errors.ModelError` for a model without labels); a scale of 1
    is plain conditional sampling (no second row), any other a :class:`GuidedLM`
    (default :data:`DEFAULT_CFG_SCALE`).
    """
    from .labels import class_id, class_ids, null_id

    if class_name is None:
        if cfg_scale is not None:
            raise ConfigError("--cfg-scale needs --class NAME (guidance toward a class)")
        return KVCacheLM(weights, batch_size, max_length), None
    cid = class_id(tokenizer, class_name)
    scale = check_scale(DEFAULT_CFG_SCALE if cfg_scale is None else cfg_scale)
    if scale == 1.0:
        return KVCacheLM(weights, batch_size, max_length), cid
    return GuidedLM(weights, batch_size, scale, class_ids(tokenizer).values(), null_id(tokenizer),
                    max_length), cid
