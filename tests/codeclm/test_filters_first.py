"""Filters-first constrained draws (codeclm.generation.filters_first): the model's own
free draw whenever it is allowed, else an exact draw from the filtered candidates that
are allowed, else mask-first.

- the own draw is the free draw (same token, same generator state after);
- the ranking holds exactly the candidates top-k / top-p keep, in race order;
- the choice among allowed candidates follows the filtered distribution restricted to
  them (empirical frequencies over 20,000 seeded draws);
- a session keeps the free run's tokens up to the first one the constraint forbids;
- a real video generation: the same share of own draws is reported, every clip valid;
- a constraint's finish_early tokens are forced where the own draw is forbidden.
"""

from __future__ import annotations

import random

import pytest
import torch

from codeclm.errors import ConfigError
from codeclm.generation.filters_first import PY_SORT_MAX, FilteredDraw, applies
from codeclm.generation.sampling import sample_tokens, token_probs
from codeclm.generation.sampling_config import SamplingConfig

from .test_lazy_masks import _EvenTokens, _tiny_lm

FILTERED = [(t, k, p) for t in (0.7, 1.0, 1.3) for k in (None, 1, 5, 50) for p in (None, 0.5, 0.9)
            if k is not None or p is not None]


def _config(setting, **kw) -> SamplingConfig:
    t, k, p = setting
    return SamplingConfig(temperature=t, top_k=k, top_p=p, **kw)


def test_the_own_draw_is_the_free_draw():
    """For the same generator state, ``own`` is ``sample_tokens``' token, and the
    generators go on alike (so a constrained run keeps the free run's noise)."""
    rng = random.Random(0)
    for trial in range(300):
        V = rng.choice([7, 60, 300])
        logits = torch.randn(2, V, generator=torch.Generator().manual_seed(trial)) * 3
        logits[:, rng.sample(range(V), V // 8)] = float("-inf")
        cfg = _config(FILTERED[trial % len(FILTERED)])
        seed = rng.randrange(1 << 30)
        g1 = [torch.Generator().manual_seed(seed + r) for r in range(2)]
        g2 = [torch.Generator().manual_seed(seed + r) for r in range(2)]
        own = FilteredDraw(logits, g1, cfg).own
        free = sample_tokens(logits, g2, cfg.temperature, cfg.top_k, cfg.top_p).tolist()
        assert own == free
        for a, b in zip(g1, g2):
            assert torch.equal(a.get_state(), b.get_state())


def test_ranked_holds_the_kept_candidates_in_race_order():
    """``ranked(r)``: no repeats, exactly the tokens with a non-zero probability after
    the filters, the own draw first, then by descending race score (ties in index
    order); for top-k rows (sorted in Python) and vocabulary-wide ones longer than
    PY_SORT_MAX (top-p alone: numpy), with ties (rounded logits)."""
    paths = set()
    for trial in range(300):
        V = 50 if trial % 2 else 600
        logits = torch.randn(1, V, generator=torch.Generator().manual_seed(trial)) * 2
        if trial % 3 == 0:
            logits = logits.round()
        cfg = _config(FILTERED[trial % len(FILTERED)])
        d = FilteredDraw(logits, [torch.Generator().manual_seed(trial)], cfg)
        ranked = d.ranked(0)
        support = token_probs(logits, cfg.temperature, cfg.top_k, cfg.top_p)[0] > 0
        assert len(set(ranked)) == len(ranked)
        assert set(ranked) == set(support.nonzero().flatten().tolist())
        assert ranked[0] == d.own[0]
        scores = d._scores[0].tolist()
        ids = list(range(len(scores))) if d._ids is None else d._ids[0].tolist()
        ref = sorted((j for j in range(len(scores)) if scores[j] > 0),
                     key=lambda j: (-scores[j], j))
        assert ranked == [ids[j] for j in ref]
        paths.add(len(scores) > PY_SORT_MAX)
    assert paths == {True, False}  # both sorts ran


def test_choice_draws_the_filtered_distribution_restricted_to_the_allowed():
    """20,000 seeded draws of one row: the constrained token's frequencies match the
    filtered probabilities renormalised over the allowed candidates (the model's
    favourite is disallowed, so every draw that picks it must move on)."""
    V = 12
    logits = torch.tensor([[3.0, 2.5, 2.2, 2.0, 1.5, 1.0, 0.5, 0.0, -1.0, -2.0, -3.0, -4.0]])
    cfg = SamplingConfig(temperature=1.0, top_k=8, top_p=0.95)
    allowed = {1, 3, 4, 6, 9}  # 0 (the favourite) and 9 (outside top-k) are out / unreachable
    probs = token_probs(logits, 1.0, 8, 0.95)[0]
    target = torch.zeros(V)
    for t in allowed:
        target[t] = probs[t]
    target /= target.sum()
    counts = torch.zeros(V)
    n = 20_000
    for seed in range(n):
        d = FilteredDraw(logits, [torch.Generator().manual_seed(seed)], cfg)
        counts[d.choice(0, allowed.__contains__)] += 1
    assert counts[9] == 0 and counts[0] == 0
    assert (counts / n - target).abs().max() < 0.012, (counts / n, target)


def test_choice_is_none_when_no_candidate_is_allowed():
    logits = torch.tensor([[5.0, 4.0, -3.0, -4.0]])
    d = FilteredDraw(logits, [torch.Generator().manual_seed(0)],
                     SamplingConfig(top_k=2, top_p=None))
    assert d.choice(0, lambda t: t >= 2) is None
    assert d.choice(0, lambda t: t == 1) == 1


def test_applies_only_where_the_orders_differ():
    assert applies(SamplingConfig())
    assert not applies(SamplingConfig(mask_order="mask-first"))
    assert not applies(SamplingConfig(temperature=0.0))
    assert not applies(SamplingConfig(top_k=None, top_p=None))
    with pytest.raises(ConfigError, match="mask order"):
        SamplingConfig(mask_order="vocab")


def test_session_keeps_the_free_tokens_until_one_is_forbidden():
    """A constrained session and a free one, same seed: the same tokens up to the
    first odd token of the free run, where the constrained run draws an even one; with
    mask-first the tokens differ before (the mask reshapes the filters at every step)."""
    from codeclm.generation.session import generate

    tok, model = _tiny_lm()
    V = tok.vocab_size
    diverged = mask_first_earlier = 0
    for seed in range(8):
        free = generate(model, tok, [[tok.bos_id]], SamplingConfig(seed=seed),
                        max_new_tokens=24).tokens[0]
        runs, stats = {}, {}
        for order in ("filters-first", "mask-first"):
            res = generate(model, tok, [[tok.bos_id]], SamplingConfig(seed=seed, mask_order=order),
                           max_new_tokens=24, constraints=[_EvenTokens(V, tok.eos_id)])
            runs[order], stats[order] = res.tokens[0], res.stats
        got = runs["filters-first"]
        assert all(t % 2 == 0 or t == tok.eos_id for t in got)
        # every draw counted; mask-first counts none (it has no own draw to keep)
        assert stats["filters-first"]["constrained"] == len(got)
        assert stats["mask-first"]["constrained"] == stats["mask-first"]["changed"] == 0
        odd = next((i for i, t in enumerate(free) if t % 2 and t != tok.eos_id), None)
        if odd is None:
            assert got == free
            assert stats["filters-first"]["changed"] == 0
            continue
        assert got[:odd] == free[:odd]
        assert got[odd] != free[odd]
        assert stats["filters-first"]["changed"] >= 1
        diverged += 1
        first_diff = next((i for i, (a, b) in enumerate(zip(runs["mask-first"], free)) if a != b),
                          len(free))
        mask_first_earlier += first_diff < odd
    assert diverged >= 4
    assert mask_first_earlier >= 1


class _EvenFinishing(_EvenTokens):
    """Even tokens only; an odd own draw is "an early end": finish_early gives 4, 6, 8."""

    FINISH = (4, 6, 8)

    def __init__(self, V: int, eos: int):
        super().__init__(V, eos)
        self.asked: list[int] = []

    def finish_early(self, token_id: int) -> list[int] | None:
        self.asked.append(token_id)
        return list(self.FINISH) if token_id % 2 else None


def test_a_constraint_that_finishes_early_gets_its_tokens_forced():
    """Where the model's own draw is not allowed, the session asks the constraint's
    ``finish_early``: its first token is the step's, the rest are forced one per step
    (not counted as sampled); ``finished`` / ``finish_tokens`` count them. Asked only
    with a forbidden own draw, and never for mask-first draws (no own draw)."""
    from codeclm.generation.session import generate

    tok, model = _tiny_lm()
    V = tok.vocab_size
    finished = 0
    for seed in range(6):
        free = generate(model, tok, [[tok.bos_id]], SamplingConfig(seed=seed),
                        max_new_tokens=24).tokens[0]
        con = _EvenFinishing(V, tok.eos_id)
        res = generate(model, tok, [[tok.bos_id]], SamplingConfig(seed=seed),
                       max_new_tokens=24, constraints=[con])
        got, stats = res.tokens[0], res.stats
        assert all(t % 2 for t in con.asked)  # asked only for forbidden (odd) own draws
        odd = next((i for i, t in enumerate(free) if t % 2 and t != tok.eos_id), None)
        if odd is None:
            assert got == free and stats["finished"] == 0
            continue
        assert got[:odd] == free[:odd]
        assert tuple(got[odd:odd + 3]) == _EvenFinishing.FINISH[:len(got) - odd]
        assert stats["finished"] == len(con.asked) >= 1
        assert stats["finish_tokens"] == 3 * stats["finished"]
        forced = 2 * stats["finished"]  # (a last finish may be cut by max_new_tokens)
        assert len(got) - forced <= stats["sampled"] < len(got)
        finished += 1
        mask_first = _EvenFinishing(V, tok.eos_id)
        res = generate(model, tok, [[tok.bos_id]],
                       SamplingConfig(seed=seed, mask_order="mask-first"),
                       max_new_tokens=24, constraints=[mask_first])
        assert mask_first.asked == [] and res.stats["finished"] == 0
    assert finished >= 3


@pytest.mark.parametrize("order", ["filters-first", "mask-first"])
def test_batch_with_lazy_and_full_masks_same_tokens(order):
    """Rows with a checkable constraint, a full-mask one and a free one in one batch:
    the same tokens as all-full masks, for either mask order."""
    from codeclm.generation.session import FullMasks, generate

    tok, model = _tiny_lm()
    V = tok.vocab_size
    for T, k, p in [(1.0, 50, 0.9), (0.8, None, 0.7), (1.3, 3, None)]:
        cfg = SamplingConfig(temperature=T, top_k=k, top_p=p, seed=5, mask_order=order)
        outs = []
        for lazy in (True, False):
            cons = [_EvenTokens(V, tok.eos_id), None, FullMasks(_EvenTokens(V, tok.eos_id))]
            if not lazy:
                cons = [FullMasks(c) if c is not None and not isinstance(c, FullMasks) else c
                        for c in cons]
            outs.append(generate(model, tok, [[tok.bos_id]] * 3, cfg, max_new_tokens=12,
                                 constraints=cons).tokens)
        assert outs[0] == outs[1], (order, T, k, p)


def test_forced_tokens_of_a_lone_row_jump_forward():
    """A lone row's forced tokens (here finish_early's) are added without forwards of
    their own and fed with the next drawn token in one ``extend``: the same tokens as
    one forward per token, with ``jumped`` fewer forwards (``steps``)."""
    from codeclm.generation.session import Session

    tok, model = _tiny_lm()
    V = tok.vocab_size
    jumped = 0
    for seed in range(6):
        runs = []
        for jump in (True, False):
            session = Session(model, tok, 1, SamplingConfig(seed=seed), max_length=40,
                              max_new_tokens=24, jump_forward=jump)
            session.start([[tok.bos_id]], [_EvenFinishing(V, tok.eos_id)])
            while session.active:
                session.step()
            runs.append((session.rows[0].tokens, session.stats))
        (on, s_on), (off, s_off) = runs
        assert on == off
        assert s_off.jumped == 0 and s_on.sampled == s_off.sampled
        assert s_on.steps == s_off.steps - s_on.jumped
        assert s_on.jumped <= 2 * s_on.finished  # (a last finish may be cut)
        jumped += s_on.jumped
    assert jumped >= 4


def test_a_row_that_jumped_forward_alone_is_fed_in_full_when_others_come_back():
    """Row 0 jumps forward over forced tokens while row 1 is finished; the owner then
    restarts row 1, and the next step, a batch decode, first feeds row 0's unfed tokens:
    both rows sample what they sample without jump-forward."""
    from codeclm.generation.session import Session

    tok, model = _tiny_lm()
    forced = [5, 7, 9, 11]
    runs = []
    for jump in (True, False):
        session = Session(model, tok, 2, SamplingConfig(seed=3), max_length=60,
                          max_new_tokens=30, jump_forward=jump)
        session.start([[tok.bos_id], [tok.bos_id]])
        for _ in range(3):
            session.step()
        session.finish(1)
        session.rows[0].forced.extend(forced)
        for _ in range(len(forced)):
            session.step()
        session.restart(1, [tok.bos_id])
        for _ in range(10):
            session.step()
        runs.append(([list(r.tokens) for r in session.rows], session.stats.jumped))
    (on, jumped), (off, _) = runs
    assert jumped == len(forced)
    assert on == off
