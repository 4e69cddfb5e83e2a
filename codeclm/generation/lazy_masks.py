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
        drawn = noise[0].tolist()
        noise = [math.log(e) for e in drawn] if min(drawn) > 0 else None
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
    candidates, top-p still to apply; else already cut), None if undecided."""
    scaled = logits / temperature if temperature != 1.0 else logits
    vals, ids = _walk_order(scaled, max_checks + (k or 0) + 1)
    early_p = p is not None and logits.dtype in _PRECISE
    ref = vals[0]
    if ref == float("-inf"):
        return None
    mass = [math.exp(v - ref) for v in vals]
    # unchecked mass beyond the walk (no top-k): the whole row's minus the walked part
    rest = float(torch.exp(scaled.double() - ref).sum()) - sum(mass) if k is None else 0.0
    vals_np = np.array(vals)
    noise_np = np.array(log_noise) if log_noise is not None else None
    found: list[int] = []
    sums = [0.0]  # sums[j]: mass of the first j allowed tokens
    scores: list[float] = []  # race scores log p - log E of the allowed tokens found
    for i in range(len(ids)):
        if vals[i] == float("-inf"):  # only zero-probability tokens are left
            return ("kept", found, True) if found and not _tied(vals, i) else None
        if i == max_checks:
            return None
        if allows(ids[i]):
            found.append(ids[i])
            sums.append(sums[-1] + mass[i])
            if log_noise is not None:
                # (a logit far below the top one could flush to zero in float32)
                far = vals[i] - ref < -60
                scores.append(float("-inf") if far else vals[i] - log_noise[len(found) - 1])
            if k is not None and len(found) == k:
                return None if _tied(vals, i + 1) else ("kept", found, True)
        if not found:
            continue
        if early_p:
            if k is not None:
                unchecked = sum(mass[i + 1:i + 1 + k - len(found)])
            else:
                unchecked = max(0.0, sum(mass[i + 1:]) + rest)
            cut = _top_p_cut(sums, unchecked, p)
            if cut is not None:
                return None if _tied(vals, i + 1) else ("kept", found[:cut], False)
        if log_noise is not None:
            sure = len(found) if p is None else _surely_kept(sums, p)
            w = _race_win(scores, sure, vals_np[i + 1:], noise_np[len(found):])
            if w is not None:
                return None if _tied(vals, i + 1) else ("token", found[w])
    return ("kept", found, True) if found and len(ids) == logits.shape[-1] else None


def _surely_kept(sums: list[float], p: float) -> int:
    """How many of the allowed tokens found top-p keeps whatever the others' mass."""
    return max(1, bisect.bisect_left(sums, (p - MARGIN) * sums[-1]))


def _race_win(scores: list[float], sure: int, unchecked: np.ndarray,
              unknown_log_noise: np.ndarray) -> int | None:
    """The index of the race's winner among the allowed tokens found, if decided: the best
    score of the ``sure`` surely kept ones beats, by :data:`MARGIN`, every other found
    one and every later top-k position (the r-th of them holds an allowed token whose
    logit is at most the r-th ``unchecked`` logit; its noise is known)."""
    win = max(scores[:sure])
    if win == float("-inf"):
        return None
    best = scores.index(win)
    margin = MARGIN * (1.0 + abs(win))
    rival = max(scores[:best] + scores[best + 1:], default=float("-inf"))
    if win - rival <= margin:
        return None
    n = min(len(unchecked), len(unknown_log_noise))
    if n:  # (-inf - x stays -inf: zero-probability positions never win)
        rival = max(rival, float((unchecked[:n] - unknown_log_noise[:n]).max()))
    return best if win - rival > margin else None


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
