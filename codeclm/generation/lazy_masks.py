"""Exact lazy token masks: draw a constrained row by checking only its top candidates.

This is the mask-first draw (top-k / top-p among the allowed tokens): the sampler's
only draw with ``SamplingConfig.mask_order="mask-first"``, and the fallback of the
default filters-first draw when none of the model's own candidates is allowed
(:mod:`codeclm.generation.filters_first`).

A full mask asks the constraint about every token of the vocabulary; most of the time
the model's best tokens are allowed, so :func:`lazy_choice` walks the row's tokens in
descending (temperature-scaled) logit order, asks ``allows(token_id)`` of each, and stops
as soon as the candidate set the full-mask path would draw from is determined:

- top-k: once k allowed tokens are found (the top k of the masked logits);
- top-p: once the allowed prefix cut by top-p is the same whatever the unchecked tokens
  are (they could all be allowed: their mass is bounded by the next k - found tokens
  with top-k, else by the whole unchecked remainder); both filters: top-k, then top-p
  (Hugging Face's order, as :func:`~codeclm.generation.sampling.candidates`);
- no filter: the exponential race's noise is drawn first and the walk goes in order of
  ``logit / temperature - log(noise)``: the first allowed token is the one the full
  masked draw picks (the same race restricted to the allowed tokens);
- temperature 0: the first allowed token.

With top-k the race's k noise values are drawn first, as the full path draws them, and
the walk (:func:`_race_walk`) stops as soon as the winner is known: the best score
``log p - log E`` among the allowed tokens found is clear, by :data:`MARGIN`, of every
other one found and of the most any later top-k position can score (position j holds
a logit of at most the (d + j)-th walked one, d the disallowed tokens so far). A step
costs O(1) besides its check: prefix sums of the masses, the best two scores kept as
they come, the later positions' bounds computed once per d.

Otherwise the draw runs :func:`~codeclm.generation.sampling.sample_tokens` on a
stand-in for the masked logits (the kept candidates' logits, ``-inf`` elsewhere), which
gives bit-identical probabilities to the full-mask path, and the row's generator
draws the same noise: for the same generator state both paths pick the same token.
When the first :data:`SPARSE_CHECKS` candidates are all disallowed and the constraint
offers a cheap superset of its mask (``possible``), the walk starts again on the
logits masked outside it (the same masked logits, so the same draw).
Whenever that cannot be guaranteed (a tie between walked logits, a top-p cut within
:data:`MARGIN` of float rounding, low-precision logits with an early top-p stop, more
than ``max_checks`` checks) :func:`lazy_choice` returns None without touching the
generator, and the caller builds the full mask.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable

import numpy as np
import torch

from .sampling import sample_tokens

#: constraint checks per row and step before falling back to the full mask
MAX_CHECKS = 96
#: a top-p cut or a race win closer than this (probability mass / log ratio) to a tie
#: is left to the full mask (float32 rounding in the full path is ~1e-6)
MARGIN = 1e-4
#: checks that find no allowed token before the walk restarts inside ``possible``
SPARSE_CHECKS = 16
#: logit dtypes precise enough for an early top-p stop (see MARGIN)
_PRECISE = (torch.float32, torch.float64)


def lazy_choice(logits: torch.Tensor, allows: Callable[[int], bool],
                generator: torch.Generator | None, temperature: float, top_k: int | None,
                top_p: float | None, max_checks: int = MAX_CHECKS,
                possible: Callable[[], torch.Tensor | None] | None = None) -> int | None:
    """The token the full-mask path would draw from ``logits`` ``[V]`` (banned tokens
    already ``-inf``) under the constraint ``allows``, or None when the walk cannot
    decide within ``max_checks`` checks (then ``generator`` has not been used).

    ``possible``: optional, a cheap bool mask (``[<= V]``, missing entries False) of a
    superset of the allowed tokens, or None where the constraint has none narrower than
    what the walk checks anyway. When the first :data:`SPARSE_CHECKS` walked tokens
    are all disallowed (the model's favourites are far from the constraint, e.g. inside
    a fixed header), it is asked for once: the walk starts again on the logits with the
    tokens outside the mask set to ``-inf`` (the masked logits, hence the draw, are the
    same), or goes on as it is when there is none (a restart would walk the same
    tokens again)."""
    V = logits.shape[-1]
    k = top_k if top_k and top_k < V else None
    p = top_p if top_p is not None and top_p < 1.0 else None
    if temperature == 0:
        return _greedy(logits, allows, max_checks)
    if k is None and p is None:
        return _race(logits, allows, generator, temperature, max_checks)
    # with top-k the exponential race's noise (k values, as the full path draws them)
    # is drawn first: the walk may then stop once the winner is known (see _race_walk)
    state = None
    noise = None
    if k is not None and generator is not None and logits.dtype in _PRECISE:
        state = generator.get_state()
        drawn = torch.empty(k, dtype=torch.float32, device=logits.device)
        noise = drawn.exponential_(generator=generator).tolist()
        if min(noise) <= 0:
            noise = None
    scaled = logits / temperature if temperature != 1.0 else logits
    superset: list = []  # possible()'s answer, once asked

    def restart() -> bool:
        superset.append(possible())
        return superset[0] is not None

    sparse = (SPARSE_CHECKS, restart) if possible is not None else None
    if noise is not None:
        vals, ids = _walk_order(scaled, max_checks + k + 1)
        got = _race_walk(vals, ids, allows, k, p, (max_checks, sparse), noise, V)
    else:
        got = _filtered(scaled, allows, k, p, (max_checks, sparse), logits.dtype in _PRECISE)
    if state is not None and (got is None or got[0] != "token"):
        generator.set_state(state)  # not drawn yet: the caller or sample_tokens draws
    if got is None:
        return None
    if got[0] == "sparse":
        return lazy_choice(_outside_masked(logits, superset[0]), allows, generator,
                           temperature, top_k, top_p, max_checks)
    if got[0] == "token":
        return got[1]
    _, ids, complete = got
    stand_in = torch.full_like(logits, float("-inf"))
    stand_in[ids] = logits[ids]
    # complete: every allowed candidate is known, so top-p runs as in the full path;
    # else the top-p cut is already made (the stand-in holds exactly the kept tokens)
    return int(sample_tokens(stand_in[None], [generator], temperature, top_k,
                             top_p if complete else None)[0])


def _outside_masked(logits: torch.Tensor, possible: torch.Tensor) -> torch.Tensor:
    """``logits`` with the tokens outside ``possible`` (bool ``[<= V]``) at ``-inf``."""
    keep = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    keep[:possible.shape[0]] = possible.to(logits.device)
    return logits.masked_fill(~keep, float("-inf"))


def _walk_order(scaled: torch.Tensor, n: int) -> tuple[list[float], list[int]]:
    vals, ids = torch.topk(scaled, min(n, scaled.shape[-1]))
    return vals.tolist(), ids.tolist()


def _tied(vals: list[float], upto: int) -> bool:
    """Whether two adjacent finite values among ``vals[:upto + 1]`` are equal (their
    order in the full path's sort is not ours)."""
    v = vals[:upto + 1]
    return any(a == b and a != float("-inf") for a, b in itertools.pairwise(v))


def _greedy(logits: torch.Tensor, allows, max_checks: int) -> int | None:
    vals, ids = _walk_order(logits, max_checks + 1)
    for i in range(min(max_checks, len(ids))):
        if vals[i] == float("-inf"):
            return None
        if allows(ids[i]):
            return None if _tied(vals, i + 1) else ids[i]
    return None


def _race(logits: torch.Tensor, allows, generator, temperature: float,
          max_checks: int) -> int | None:
    """No filter: the exponential race of :func:`sample_tokens` (``argmax p / E``) over
    the allowed tokens is won by the first allowed token in ``log p - log E`` order."""
    if generator is None:
        return None
    state = generator.get_state()
    noise = torch.empty(1, logits.shape[-1], dtype=torch.float32, device=logits.device)
    noise.exponential_(generator=generator)
    scaled = logits.double() / temperature if temperature != 1.0 else logits.double()
    key = scaled - noise[0].double().log()
    top = float(scaled.max())
    vals, ids = _walk_order(key, max_checks + 1)
    for i in range(min(max_checks, len(ids) - 1)):
        if vals[i] == float("-inf"):
            break
        if allows(ids[i]):
            # a clear win, and a probability that float32 does not flush to zero
            near = MARGIN * (1.0 + abs(vals[i]))
            if vals[i] - vals[i + 1] > near and float(scaled[ids[i]]) - top > -60:
                return ids[i]
            break
    generator.set_state(state)
    return None


def _filtered(scaled: torch.Tensor, allows, k: int | None, p: float | None,
              limits: tuple, precise: bool) -> tuple | None:
    """Walk the row (temperature-scaled logits) for the top-k / top-p filtered draw
    when the race's noise is not drawn first: ``("kept", ids, complete)`` once the
    kept allowed tokens are known (``complete``: all the allowed candidates, top-p
    still to apply; else already cut), None if undecided, ``("sparse",)`` when the
    first ``n`` checks found nothing and ``restart()`` says to start again (``limits[1]``:
    ``(n, restart)`` or None); ``limits[0]``: the most checks.
    ``precise``: the logits' dtype allows an early top-p cut (see :data:`MARGIN`)."""
    max_checks, sparse = limits
    vals, ids = _walk_order(scaled, max_checks + (k or 0) + 1)
    early_p = p is not None and precise
    ref = vals[0]
    if ref == float("-inf"):
        return None
    mass, prefix = _masses(vals)
    # unchecked mass beyond the walk (no top-k): the whole row's minus the walked part
    rest = float(torch.exp(scaled.double() - ref).sum()) - prefix[-1] if k is None else 0.0
    found: list[int] = []
    sums = [0.0]  # sums[j]: mass of the first j allowed tokens
    for i in range(len(ids)):
        if vals[i] == float("-inf"):  # only zero-probability tokens are left
            return None if not found or _tied(vals, i) else ("kept", found, True)
        if i == max_checks:
            return None
        if sparse is not None and i == sparse[0] and not found and sparse[1]():
            return ("sparse",)
        if allows(ids[i]):
            found.append(ids[i])
            sums.append(sums[-1] + mass[i])
            if k is not None and len(found) == k:
                return None if _tied(vals, i + 1) else ("kept", found, True)
        if not found or not early_p:
            continue
        if k is not None:
            unchecked = prefix[min(len(mass), i + 1 + k - len(found))] - prefix[i + 1]
        else:
            unchecked = max(0.0, prefix[-1] - prefix[i + 1] + rest)
        cut = _top_p_cut(sums, unchecked, p)
        if cut is not None:
            return None if _tied(vals, i + 1) else ("kept", found[:cut], False)
    return ("kept", found, True) if found and len(ids) == scaled.shape[-1] else None


def _masses(vals: list[float]) -> tuple[list[float], list[float]]:
    """``exp(vals - vals[0])`` and its prefix sums (``prefix[j]``: the first j's), in
    float64. (Plain Python: for the ~150 values of a walk, numpy's conversions cost
    more than the arithmetic, 3-5x more right after a forward pass.)"""
    ref, exp = vals[0], math.exp
    mass = [exp(v - ref) for v in vals]
    return mass, [0.0, *itertools.accumulate(mass)]


def _race_walk(vals: list[float], ids: list[int], allows, k: int, p: float | None,
               limits: tuple, noise: list[float], V: int) -> tuple | None:
    """Walk the row (``vals``, ``ids``: its top logits, temperature-scaled, and their
    tokens) for the top-k (and top-p) draw whose race noise (``noise``: the k Exp(1)
    values) is drawn: ``("token", id)`` once the race is decided, else as
    :func:`_filtered`. Each step costs O(1) besides the check: prefix sums of the
    masses, the race's best two scores kept as they come, the later positions'
    bounds (:meth:`_Race.bounds`) read only when the best is clear of the others."""
    max_checks, sparse = limits
    ref, neg = vals[0], float("-inf")
    if ref == neg:
        return None
    mass, prefix = _masses(vals)
    race = _Race(vals, noise, k)
    scores, log = race.scores, math.log
    found: list[int] = []
    sums = [0.0]  # sums[j]: mass of the first j allowed tokens
    total, best, second, best_at, margin = 0.0, neg, neg, -1, 0.0
    row, row_d = None, -1  # the later positions' bounds for row_d disallowed tokens
    for i in range(len(ids)):
        v = vals[i]
        if v == neg:  # only zero-probability tokens are left
            return None if not found or _tied(vals, i) else _kept(found, sums, p, True, race)
        if i == max_checks:
            return None
        if sparse is not None and i == sparse[0] and not found and sparse[1]():
            return ("sparse",)
        if allows(ids[i]):
            f = len(found)
            found.append(ids[i])
            total += mass[i]
            sums.append(total)
            # a logit 60 below the top one could flush to zero in float32: no score
            s = neg if v - ref < -60 else v - log(noise[f])
            scores.append(s)
            if s > best:
                best, second, best_at, margin = s, best, f, MARGIN * (1.0 + abs(s))
            elif s > second:
                second = s
            if f + 1 == k:
                return None if _tied(vals, i + 1) else _kept(found, sums, p, True, race)
        elif not found:
            continue
        f = len(found)
        if p is not None:
            unchecked = prefix[min(len(mass), i + 1 + k - f)] - prefix[i + 1]
            # (a cut needs the mass found to reach p of the largest total)
            if total >= (p + MARGIN) * (total + unchecked):
                cut = _top_p_cut(sums, unchecked, p)
                if cut is not None:
                    return (None if _tied(vals, i + 1)
                            else _kept(found[:cut], sums, None, False, race))
        if (best != neg and best - second > margin
                and (p is None or best_at < _surely_kept(sums, p))):
            if i + 1 - f != row_d:
                row_d = i + 1 - f
                row = race.bounds(row_d)
            if best - row[f] > margin:
                return None if _tied(vals, i + 1) else ("token", found[best_at])
    return _kept(found, sums, p, True, race) if found and len(ids) == V else None


def _kept(ids: list[int], sums: list[float], p: float | None, complete: bool,
          race: _Race | None) -> tuple:
    """``("kept", ids, complete)``, or ``("token", id)`` when the race among the kept
    tokens (top-p applied here if ``complete``) is already decided by the noise drawn."""
    if race is not None:
        cut = len(ids)
        if complete and p is not None:
            cut = _top_p_cut(sums, 0.0, p)
        if cut is not None:
            w = race.winner_among(cut)
            if w is not None:
                return ("token", ids[w])
    return ("kept", ids, complete)


class _Race:
    """The exponential race of the top-k draw over the allowed tokens found, in walk
    order: the j-th found one runs with the j-th noise ``E_j``, its score ``log p - log
    E_j`` (``scores``, filled by :func:`_race_walk`). Top-k position j >= found (the
    tokens found so far) holds a logit of at most ``vals[d + j]``, ``d`` the disallowed
    tokens walked: :meth:`bounds` bounds those positions' scores."""

    def __init__(self, vals: list[float], noise: list[float], k: int):
        self.vals, self.noise, self.k = vals, noise, k
        self.scores: list[float] = []
        self._log_noise: np.ndarray | None = None

    def bounds(self, d: int) -> list[float]:
        """``b[j]``: the most a top-k position j' >= j within the walk can score when
        ``d`` tokens are disallowed, max of ``vals[d + j'] - log E_j'`` (``-inf`` from
        the walk's or top-k's end on; ``k + 1`` entries)."""
        if self._log_noise is None:
            self._log_noise = np.log(np.array(self.noise))
        end = max(0, min(len(self.vals) - d, self.k))
        terms = np.subtract(self.vals[d:d + end], self._log_noise[:end])
        b = np.maximum.accumulate(terms[::-1])[::-1].tolist()
        return b + [float("-inf")] * (self.k + 1 - end)

    def winner_among(self, cut: int) -> int | None:
        """The winner among the first ``cut`` tokens found (no other candidate), if
        decided by :data:`MARGIN`."""
        scores = self.scores[:cut]
        win = max(scores, default=float("-inf"))
        if win == float("-inf"):
            return None
        best = scores.index(win)
        rival = max(scores[:best] + scores[best + 1:], default=float("-inf"))
        return best if win - rival > MARGIN * (1.0 + abs(win)) else None


def _surely_kept(sums: list[float], p: float) -> int:
    """How many of the allowed tokens found top-p keeps whatever the others' mass."""
    return max(1, bisect.bisect_left(sums, (p - MARGIN) * sums[-1]))


def _top_p_cut(sums: list[float], unchecked: float, p: float) -> int | None:
    """How many of the allowed tokens found top-p keeps, if that no longer depends on
    the unchecked tokens' mass (at most ``unchecked``) nor on float rounding; else None.
    Token j (0-based) is kept iff the mass before it, over the total, is < ``p``."""
    low, high = sums[-1], sums[-1] + unchecked  # the total's bounds
    # the first token not surely kept (its mass before is at least p - MARGIN of the
    # smallest total); it and all later ones must be surely removed
    c = max(1, bisect.bisect_left(sums, (p - MARGIN) * low))
    if c >= len(sums):
        return None
    return c if sums[c] >= (p + MARGIN) * high else None
