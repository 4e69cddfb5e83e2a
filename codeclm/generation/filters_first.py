"""Constrained draws that keep the model's own choice: filters first, then the mask.

Two ways to combine a constraint's mask with top-k / top-p (``SamplingConfig.mask_order``):

- ``"filters-first"`` (the default): the filters run on the model's own distribution,
  exactly as in free sampling, and the row's generator draws the same race noise as
  free sampling (:func:`~codeclm.generation.sampling.sample_tokens`). The candidates,
  ranked by the race (``p / E``), are checked in that order and the first allowed one
  is the token. So the constrained token *is* the free token whenever the free token
  is allowed (same seed, same logits), and otherwise it is an exact draw from the
  filtered distribution restricted to the allowed candidates (the exponential race
  restricted to a subset samples that subset in proportion to ``p``). Only when no
  candidate is allowed does the draw go on with ``"mask-first"`` (the generator then
  draws its noise again).
- ``"mask-first"``: mask, then filter (Hugging Face's order for
  ``prefix_allowed_tokens_fn``): top-k / top-p are taken among the allowed tokens, so
  the mask reshapes the distribution at every step, not only where the model's draw
  is invalid.

Greedy decoding and sampling without filters give the same distribution either way
(the masked argmax; the distribution conditioned on the allowed set), so filters-first
only runs when a filter is on (:func:`applies`).

Why it is the default: a trained model's own draw is valid at nearly every step, so a
filters-first draw costs free sampling plus one check (mask-first must find enough
allowed tokens to place the top-p cut: ~18 checks per token on the bundled video
model), and the constraint changes only the tokens that would break the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .sampling import race_scores
from .sampling_config import SamplingConfig

#: the most candidates :meth:`FilteredDraw.ranked` sorts in plain Python (more: numpy)
PY_SORT_MAX = 256


def applies(config: SamplingConfig) -> bool:
    """Whether ``config`` draws filters-first: that mask order, a temperature > 0 and
    a top-k or top-p filter on (otherwise both orders are the same distribution)."""
    return (config.mask_order == "filters-first" and config.temperature > 0
            and (config.top_k is not None or config.top_p is not None))


class FilteredDraw:
    """One step's free draw for some rows, kept for the constrained choice.

    ``logits`` ``[R, V]`` (banned tokens already ``-inf``): the race of free sampling
    (:func:`~codeclm.generation.sampling.race_scores`, what
    :func:`~codeclm.generation.sampling.sample_tokens` draws with), row ``r`` with
    ``generators[r]``. ``own[r]``: the free draw's token (the race's winner, ``argmax
    p / E``). :meth:`choice` walks further down the race only when that token is not
    allowed."""

    def __init__(self, logits: torch.Tensor, generators: Sequence[torch.Generator | None],
                 config: SamplingConfig, noise: torch.Tensor | None = None):
        self._scores, self._ids = race_scores(logits, generators, config.temperature,
                                              config.top_k, config.top_p, noise)
        first = self._scores.argmax(-1, keepdim=True)
        self.own: list[int] = (first if self._ids is None
                               else self._ids.gather(-1, first)).view(-1).tolist()

    def ranked(self, r: int) -> list[int]:
        """Row ``r``'s candidates that the filters keep, in race order (``p / E``
        descending, ties in index order as ``argmax``): ``ranked(r)[0] == own[r]``."""
        row = self._scores[r]
        if row.shape[0] > PY_SORT_MAX:  # a vocabulary-wide row (top-p alone): numpy's
            scores = row.cpu().numpy()  # sort (stable: ties in index order)
            kept = int(np.count_nonzero(scores > 0))  # (removed candidates: probability 0)
            order = np.argsort(-scores, kind="stable")[:kept]
            return (order if self._ids is None else self._ids[r].cpu().numpy()[order]).tolist()
        # a top-k row in plain Python: for ~50 candidates sorting the listed scores costs
        # less than torch's or numpy's ops, most of all right after a forward pass (this
        # runs at every rejected draw); sorted() is stable with reverse=True too
        scores = row.tolist()
        ids = range(len(scores)) if self._ids is None else self._ids[r].tolist()
        order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
        return [ids[j] for j in order if scores[j] > 0]

    def choice(self, r: int, allows: Callable[[int], bool]) -> int | None:
        """Row ``r``'s constrained token: its own draw if ``allows`` it, else the first
        allowed candidate in race order; None when no candidate is allowed."""
        if allows(self.own[r]):
            return self.own[r]
        return first_allowed(self.ranked(r)[1:], allows)


def first_allowed(ranked: Sequence[int], allows: Callable[[int], bool]) -> int | None:
    """The first of ``ranked`` that ``allows``, or None when none is."""
    for token in ranked:
        if allows(token):
            return token
    return None
