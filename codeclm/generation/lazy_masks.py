"""Exact lazy token masks: draw a constrained row by checking only its top candidates.

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

The draw itself then runs :func:`~codeclm.generation.sampling.sample_tokens` on a
stand-in for the masked logits (the kept candidates' logits, ``-inf`` elsewhere), which
gives bit-identical probabilities to the full-mask path, and the row's generator
draws the same noise: for the same generator state both paths pick the same token.
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
MAX_CHECKS = 64
#: a top-p cut or a race win closer than this (probability mass / log ratio) to a tie
#: is left to the full mask (float32 rounding in the full path is ~1e-6)
MARGIN = 1e-4
#: logit dtypes precise enough for an early top-p stop (see MARGIN)
_PRECISE = (torch.float32, torch.float64)


def lazy_choice(logits: torch.Tensor, allows: Callable[[int], bool],
                generator: torch.Generator | None, temperature: float, top_k: int | None,
                top_p: float | None, max_checks: int = MAX_CHECKS) -> int | None:
    """The token the full-mask path would draw from ``logits`` ``[V]`` (banned tokens
    already ``-inf``) under the constraint ``allows``, or None when the walk cannot
    decide within ``max_checks`` checks (then ``generator`` has not been used)."""
    V = logits.shape[-1]
    k = top_k if top_k and top_k < V else None
    p = top_p if top_p is not None and top_p < 1.0 else None
    if temperature == 0:
        return _greedy(logits, allows, max_checks)
    if k is None and p is None:
        return _race(logits, allows, generator, temperature, max_checks)
    # with top-k the exponential race's noise (k values, as the full path draws them)
    # is drawn first: the walk may then stop once the winner is known (see _race_win)
    state = None
    noise = None
    if k is not None and generator is not None and logits.dtype in _PRECISE:
        state = generator.get_state()
        noise = torch.empty(1, k, dtype=torch.float32, device=logits.device)
        noise.exponential_(generator=generator)
        noise = noise[0].double().log_().tolist() if bool(noise.min() > 0) else None
    got = _filtered(logits, allows, temperature, k, p, max_checks, noise)
    if state is not None and (got is None or got[0] != "token"):
        generator.set_state(state)  # not drawn yet: the caller or sample_tokens draws
    if got is None:
        return None
    if got[0] == "token":
        return got[1]
    _, ids, complete = got
    stand_in = torch.full_like(logits, float("-inf"))
    stand_in[ids] = logits[ids]
    # complete: every allowed candidate is known, so top-p runs as in the full path;
    # else the top-p cut is already made (the stand-in holds exactly the kept tokens)
    return int(sample_tokens(stand_in[None], [generator], temperature, top_k,
                             top_p if complete else None)[0])


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


def _filtered(logits: torch.Tensor, allows, temperature: float, k: int | None,
              p: float | None, max_checks: int, log_noise: list[float] | None) -> tuple | None:
    """Walk the row for the top-k / top-p filtered draw: ``("token", id)`` once the
    race with ``log_noise`` (log E per top-k position) is decided, ``("kept", ids,
    complete)`` once the kept allowed tokens are known (``complete``: all the allowed
    candidates, top-p still to apply; else already cut), None if undecided. Each step
    costs O(1) besides the check (prefix sums, the race's best two, suffix maxima)."""
    scaled = logits / temperature if temperature != 1.0 else logits
    vals, ids = _walk_order(scaled, max_checks + (k or 0) + 1)
    early_p = p is not None and logits.dtype in _PRECISE
    ref = vals[0]
    if ref == float("-inf"):
        return None
    mass = [math.exp(v - ref) for v in vals]
    prefix = list(itertools.accumulate(mass, initial=0.0))  # prefix[j]: sum(mass[:j])
    # unchecked mass beyond the walk (no top-k): the whole row's minus the walked part
    rest = float(torch.exp(scaled.double() - ref).sum()) - prefix[-1] if k is None else 0.0
    race = _Race(vals, log_noise, k) if log_noise is not None else None
    found: list[int] = []
    sums = [0.0]  # sums[j]: mass of the first j allowed tokens
    for i in range(len(ids)):
        if vals[i] == float("-inf"):  # only zero-probability tokens are left
            if not found or _tied(vals, i):
                return None
            return _kept(found, sums, p, True, race)
        if i == max_checks:
            return None
        if allows(ids[i]):
            found.append(ids[i])
            sums.append(sums[-1] + mass[i])
            if race is not None:
                race.add(vals[i] - ref, vals[i])
            if k is not None and len(found) == k:
                return None if _tied(vals, i + 1) else _kept(found, sums, p, True, race)
        if not found:
            continue
        if early_p:
            if k is not None:
                unchecked = prefix[min(len(mass), i + 1 + k - len(found))] - prefix[i + 1]
            else:
                unchecked = max(0.0, prefix[-1] - prefix[i + 1] + rest)
            # (a cut needs the mass found to reach p of the largest total)
            high = sums[-1] + unchecked
            cut = _top_p_cut(sums, unchecked, p) if sums[-1] >= (p + MARGIN) * high else None
            if cut is not None:
                return None if _tied(vals, i + 1) else _kept(found[:cut], sums, None, False,
                                                             race)
        if race is not None:
            w = race.winner(sums, p, i + 1 - len(found))
            if w is not None:
                return None if _tied(vals, i + 1) else ("token", found[w])
    return _kept(found, sums, p, True, race) if found and len(ids) == logits.shape[-1] else None


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
    """The exponential race of the top-k draw over the allowed tokens found so far, in
    walk order (the j-th found one runs with the j-th noise, its score ``log p - log
    E``): the best score and its first index, the best score of the others, and the
    bound on the later top-k positions: position j >= found holds a logit of at most
    ``vals[d + j]``, ``d`` the disallowed tokens walked (first the cheap bound with the
    smallest later noise, then per ``d`` the suffix maxima of ``vals[d + j] - log E_j``)."""

    def __init__(self, vals: list[float], log_noise: list[float], k: int):
        self.vals, self.log_noise, self.k = vals, log_noise, k
        self.scores: list[float] = []
        self.best = self.second = float("-inf")
        self.best_at = -1
        #: least_noise[j]: min(log_noise[j:])
        self.least_noise = list(itertools.accumulate(reversed(log_noise), min))[::-1]
        self._bounds: dict[int, list[float]] = {}

    def add(self, rel: float, val: float) -> None:
        """The next allowed token found: ``rel`` its logit minus the top one, ``val``
        its logit (a logit 60 below the top one could flush to zero in float32)."""
        j = len(self.scores)
        s = float("-inf") if rel < -60 else val - self.log_noise[j]
        self.scores.append(s)
        if s > self.best:
            self.best, self.second, self.best_at = s, self.best, j
        elif s > self.second:
            self.second = s

    def winner(self, sums: list[float], p: float | None, disallowed: int) -> int | None:
        """The index of the race's winner among the tokens found, if decided: the best
        score is one of the tokens top-p surely keeps (``sums``: their masses' prefix
        sums) and beats, by :data:`MARGIN`, every other found one and every later top-k
        position."""
        win = self.best
        if win == float("-inf"):
            return None
        margin = MARGIN * (1.0 + abs(win))
        if win - self.second <= margin:
            return None
        if p is not None and self.best_at >= _surely_kept(sums, p):
            return None
        j, d = len(self.scores), disallowed
        if j >= min(len(self.vals) - d, self.k):  # no later position within the walk
            return self.best_at
        if win - (self.vals[d + j] - self.least_noise[j]) > margin:
            return self.best_at
        return self.best_at if win - self._bound(d, j) > margin else None

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

    def _bound(self, d: int, j: int) -> float:
        """max over top-k positions j' >= j within the walk of vals[d + j'] - log E_j'."""
        b = self._bounds.get(d)
        if b is None:
            end = min(len(self.vals) - d, self.k)
            terms = np.subtract(self.vals[d:d + end], self.log_noise[:end])
            b = self._bounds[d] = np.maximum.accumulate(terms[::-1])[::-1].tolist()
        return b[j] if j < len(b) else float("-inf")


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
