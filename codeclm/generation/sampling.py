"""Logits -> token: the filters and the per-row draw (the settings, torch-free:
:mod:`codeclm.generation.sampling_config`).

Temperature, top-k, top-p, in that order (as Hugging Face's processors apply them), then
one draw per row from that row's own ``torch.Generator`` (exponential race:
``argmax(p / E)``, ``E ~ Exp(1)``, which samples exactly from ``p``). With top-k the draw
is over the k candidates only (no vocabulary sort).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .sampling_config import SamplingConfig


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Scale and mask logits ``[B, V]``; removed entries become ``-inf``.

    Order and tie rules follow Hugging Face: divide by ``temperature`` (ignored if 0);
    top-k keeps every token whose logit is >= the k-th largest (ties kept); top-p keeps,
    in descending order, each token whose *preceding* probability mass is < ``top_p``
    (so the smallest prefix with mass >= top_p, and always the top token).
    """
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    V = logits.shape[-1]
    if top_k and top_k < V:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs
        remove = before >= top_p
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return logits


def _top_p_sorted(sorted_logits: torch.Tensor, top_p: float | None) -> torch.Tensor:
    """Top-p on logits already sorted in descending order (same rule as filter_logits)."""
    if top_p is None or top_p >= 1.0:
        return sorted_logits
    probs = sorted_logits.softmax(-1)
    remove = (probs.cumsum(-1) - probs) >= top_p
    if top_p <= 0:  # (else the top token's preceding mass, exactly 0, keeps it already)
        remove[..., 0] = False
    return sorted_logits.masked_fill(remove, float("-inf"))


def candidates(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The distribution one draw is made from: ``(probs [B, C], ids [B, C] or None)``.

    With top-k the C = k candidates come from one ``topk`` (sorted), and top-p runs on
    those k only (cheaper than sorting the vocabulary); exactly k are kept, so a tie at
    the k-th logit is broken by ``topk`` where :func:`filter_logits` keeps both. Without
    top-k, C = V and ``ids`` is None (the candidates are the vocabulary).
    """
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    V = logits.shape[-1]
    if top_k and top_k < V:
        vals, ids = torch.topk(logits, top_k, dim=-1)
        return _top_p_sorted(vals, top_p).softmax(-1, dtype=torch.float32), ids
    return filter_logits(logits, 1.0, None, top_p).softmax(-1, dtype=torch.float32), None


def token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None) -> torch.Tensor:
    """``[B, V]`` probabilities :func:`sample_tokens` draws from (for tests and analysis)."""
    probs, ids = candidates(logits, temperature, top_k, top_p)
    if ids is None:
        return probs
    return torch.zeros(logits.shape, dtype=probs.dtype, device=probs.device).scatter(-1, ids, probs)


def make_generators(seed: int, n: int, device="cpu") -> list[torch.Generator]:
    """One generator per row: row ``r`` is seeded ``seed + r``."""
    return [torch.Generator(device=device).manual_seed(seed + r) for r in range(n)]


def race_scores(logits: torch.Tensor, generators: Sequence[torch.Generator | None],
                temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The exponential race of one draw per row: ``(scores [B, C], ids [B, C] or None)``,
    ``scores = p / E`` over :func:`candidates` (0 for removed ones), ``E ~ Exp(1)`` drawn
    from each row's own generator (rows whose generator is None: arbitrary). The draw is
    the argmax; :mod:`codeclm.generation.filters_first` also walks further down.
    ``noise``: as :func:`sample_tokens`. ``temperature`` must be > 0."""
    probs, ids = candidates(logits, temperature, top_k, top_p)
    if noise is None or noise.numel() < probs.numel():
        noise = torch.empty_like(probs)
    elif noise.shape != probs.shape:
        noise = noise.view(-1)[:probs.numel()].view(probs.shape)
    if len(generators) == 1:  # the whole buffer is the row: no per-row view
        if generators[0] is not None:
            noise.exponential_(generator=generators[0])
    else:
        for row, g in zip(noise.unbind(0), generators):
            if g is not None:
                row.exponential_(generator=g)
    return probs.div_(noise), ids  # (probs is ours: divide in place)


def sample_tokens(logits: torch.Tensor, generators: Sequence[torch.Generator | None],
                  temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
    """Draw one token per row from logits ``[B, V]`` after temperature/top-k/top-p;
    returns ``[B]`` long.

    Each row uses its own generator (one ``Exp(1)`` draw per candidate per row), so a
    row's tokens do not depend on the other rows. ``temperature == 0``: argmax, no
    draw. Rows whose generator is None are not drawn (their result is arbitrary).
    ``noise``: an optional preallocated float32 buffer, best of the candidates' shape
    ``[B, C]`` (:func:`noise_buffer`), else with at least as many elements.
    """
    if temperature == 0:
        return logits.argmax(-1)
    scores, ids = race_scores(logits, generators, temperature, top_k, top_p, noise)
    choice = scores.argmax(-1, keepdim=True)
    return (choice if ids is None else ids.gather(-1, choice)).view(-1)


def noise_buffer(batch: int, vocab: int, config: SamplingConfig, device="cpu") -> torch.Tensor:
    """The float32 ``[batch, C]`` buffer :func:`sample_tokens` draws into, C the number of
    candidates ``config`` leaves (top-k, or the vocabulary)."""
    k = config.top_k
    width = k if config.temperature > 0 and k and k < vocab else vocab
    return torch.empty(batch, width, device=device)
