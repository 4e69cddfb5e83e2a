"""Exact lazy token masks (codeclm.generation.lazy_masks): the same token as the full
mask for the same generator state, never a disallowed one.

- random logits and random constraints over every sampling setting (temperature 0 and
  not, top-k, top-p, both, none), ties and banned tokens included;
- the H.264 slice constraint's single-token check equals its mask in real states (the
  canonical x264 encodes of the sample clips, token by token);
- whole generations with the bundled video model, lazy vs full masks, token for token.
"""

from __future__ import annotations

import random

import pytest
import torch

from codeclm.generation.lazy_masks import MAX_CHECKS, SPARSE_CHECKS, lazy_choice
from codeclm.generation.sampling import sample_tokens

SETTINGS = [(t, k, p) for t in (0.0, 0.7, 1.0, 1.3) for k in (None, 1, 5, 50)
            for p in (None, 0.5, 0.9, 1.0)]


def _random_case(rng: random.Random, V: int):
    """Logits [V] (some banned at -inf, some ties, a peaked or a flat row) and an
    allowed set (dense, sparse, or only far down the ranking)."""
    scale = rng.choice([0.5, 2.0, 6.0])
    logits = torch.randn(V, generator=torch.Generator().manual_seed(rng.randrange(1 << 30)))
    logits = logits * scale
    if rng.random() < 0.3:  # ties
        logits[rng.sample(range(V), min(10, V))] = float(logits[rng.randrange(V)])
    if rng.random() < 0.3:
        logits = logits.round()  # many ties
    logits[rng.sample(range(V), V // 8)] = float("-inf")
    density = rng.choice([0.02, 0.3, 0.9, 1.0])
    allowed = torch.rand(V, generator=torch.Generator().manual_seed(rng.randrange(1 << 30)))
    allowed = allowed < density
    if rng.random() < 0.2:  # the best tokens all disallowed
        allowed[torch.topk(logits, min(40, V - 1)).indices] = False
    allowed[rng.randrange(V)] = True
    return logits, allowed


def _same_draw(logits, allowed, setting, seed, possible=None, max_checks=MAX_CHECKS) -> bool:
    """Whether the lazy path decided: it then picks the full-mask path's token for the
    same generator state (and leaves the generator where the full path does); else it
    declined without touching the generator. At most ``max_checks`` checks."""
    T, k, p = setting
    calls = []

    def allows(t):
        calls.append(t)
        return bool(allowed[t])

    g_lazy = torch.Generator().manual_seed(seed)
    lazy = lazy_choice(logits.clone(), allows, g_lazy, T, k, p, possible=possible)
    g_full = torch.Generator().manual_seed(seed)
    masked = logits.masked_fill(~allowed, float("-inf"))
    full = int(sample_tokens(masked[None], [g_full], T, k, p)[0])
    assert bool(allowed[full])
    assert len(calls) <= max_checks
    if lazy is None:
        # declined: the generator is where it was, so the full path draws as usual
        fresh = torch.Generator().manual_seed(seed)
        assert torch.equal(g_lazy.get_state(), fresh.get_state())
        return False
    assert bool(allowed[lazy]), setting
    assert lazy == full, setting
    # and the two generators go on alike
    assert torch.equal(g_lazy.get_state(), g_full.get_state())
    return True


def test_lazy_draw_equals_the_full_mask_draw():
    """For the same generator state, the lazy path picks the full-mask path's token (or
    declines without touching the generator); it decides most draws."""
    rng = random.Random(0)
    decided = total = 0
    for trial in range(1500):
        V = rng.choice([7, 60, 300])
        logits, allowed = _random_case(rng, V)
        if not bool(torch.isfinite(logits[allowed]).any()):
            continue
        total += 1
        decided += _same_draw(logits, allowed, SETTINGS[trial % len(SETTINGS)],
                              rng.randrange(1 << 30))
    assert decided > 0.5 * total


def test_lazy_draw_restarted_within_a_superset_equals_the_full_mask_draw():
    """With ``possible`` (a superset of the allowed tokens), a walk whose first
    SPARSE_CHECKS tokens are all disallowed restarts on the logits masked outside it:
    still the full-mask path's token, and draws with few allowed tokens far down the
    ranking are decided."""
    rng = random.Random(1)
    decided = restarted = 0
    for trial in range(400):
        V = rng.choice([60, 300])
        logits, allowed = _random_case(rng, V)
        top = torch.topk(logits, min(40, V - 1)).indices
        allowed[top] = False  # the model's favourites are all disallowed
        finite = torch.isfinite(logits) & ~allowed
        allowed[rng.choice(finite.nonzero().flatten().tolist())] = True
        superset = allowed | (torch.rand(V, generator=torch.Generator().manual_seed(trial)) < 0.05)
        setting = SETTINGS[trial % len(SETTINGS)]
        if setting[1] is None and setting[2] in (None, 1.0) or setting[0] == 0:
            continue  # (no filter, or greedy: no restart on those paths)
        if trial % 2 and not allowed[-1]:
            superset = superset[:-1]  # shorter than the logits: the rest is outside
        ok = _same_draw(logits, allowed, setting, rng.randrange(1 << 30),
                        possible=lambda s=superset: s, max_checks=SPARSE_CHECKS + MAX_CHECKS)
        decided += ok
        restarted += 1
    assert restarted > 100 and decided > 0.5 * restarted


def test_lazy_draw_without_a_superset_walks_on():
    """``possible`` answering None (no superset narrower than the checks): the walk is
    not restarted, it goes on past SPARSE_CHECKS: still the full-mask path's token,
    ``possible`` asked once per draw at most, and only when the first SPARSE_CHECKS
    walked tokens are all disallowed."""
    rng = random.Random(4)
    decided = asked = 0
    for trial in range(300):
        V = rng.choice([60, 300])
        logits, allowed = _random_case(rng, V)
        if trial % 3:
            allowed[torch.topk(logits, min(40, V - 1)).indices] = False
            far = (torch.isfinite(logits) & ~allowed).nonzero().flatten().tolist()
            allowed[rng.choice(far)] = True
        setting = SETTINGS[trial % len(SETTINGS)]
        asks = []
        decided += _same_draw(logits, allowed, setting, rng.randrange(1 << 30),
                              possible=lambda asks=asks: asks.append(1))
        assert len(asks) <= 1
        asked += len(asks)
    assert asked > 50 and decided > 150


def test_lazy_path_in_a_batch_matches_full_masks():
    """Session rows with a checkable constraint (lazy) and without (full) in one batch:
    the same tokens as all-full masks, row by row, for every sampling setting."""
    from codeclm.generation.sampling_config import SamplingConfig
    from codeclm.generation.session import FullMasks, generate

    tok, model = _tiny_lm()
    V = tok.vocab_size
    for T, k, p in [(1.0, 50, 0.9), (0.8, None, 0.7), (1.0, None, None), (0.0, 5, None)]:
        cfg = SamplingConfig(temperature=T, top_k=k, top_p=p, seed=3)
        outs = []
        for lazy in (True, False):
            cons = [_EvenTokens(V), None, _EvenTokens(V)]
            if not lazy:
                cons = [FullMasks(c) if c is not None else None for c in cons]
            res = generate(model, tok, [[tok.bos_id]] * 3, cfg, max_new_tokens=12,
                           constraints=cons)
            outs.append(res.tokens)
        assert outs[0] == outs[1], (T, k, p)
        for row in (0, 2):
            assert all(t % 2 == 0 or t == tok.eos_id for t in outs[0][row])


class _EvenTokens:
    """A checkable constraint: even token ids (and EOS) only."""

    done = False

    def __init__(self, V: int, eos: int = 2):
        self.mask = torch.arange(V) % 2 == 0
        self.mask[eos] = True

    def allowed_mask(self):
        return self.mask

    def allows(self, token_id: int) -> bool:
        return bool(self.mask[token_id])

    def advance(self, token_id: int) -> None:
        pass

    def copy(self):
        return self


def _tiny_lm():
    from transformers import LlamaForCausalLM

    from codeclm.models import llama_config
    from codeclm.tokenizer import ByteTokenizer

    tok = ByteTokenizer.train([bytes(range(256)) * 4], 300, "h264")
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config("tiny", tok.vocab_size, 64, hidden_size=32,
                                          intermediate_size=64)).eval()
    return tok, model


# ----------------------------------------------------------------------------- H.264
@pytest.fixture(scope="module")
def bundled_video():
    from codeclm.model_dir import bundled_model_dir

    if bundled_model_dir("h264") is None:
        pytest.skip("no bundled video model")
    from avclm.generate import load_model

    return load_model(None, "h264")


@pytest.mark.parametrize("vocab", ["bundled", "trained-1024"])
def test_slice_constraint_allows_equals_its_mask_in_x264_states(bundled_video, vocab):
    """In the states of canonical x264 encodes (every 7th token of the sample clips'
    tokenizations and every NAL boundary; the bundled tokenizer and one of 1,024 tokens
    trained on those encodes), ``allows(t)`` and ``token_check()(t)`` are the
    mask's entry for every token, computed before the mask and its parts exist (no
    cache to read them from: the single-token paths of every part)."""
    from avclm.codec import SAMPLE_CLIPS, encode_video
    from avclm.nal_masks import NalConstraint

    tok, profile = bundled_video.tokenizer, bundled_video.profile
    if vocab != "bundled":  # long tokens: start codes with whole slice headers and data
        from codeclm.tokenizer import ByteTokenizer

        tok = ByteTokenizer.train([encode_video(c, profile) for c in SAMPLE_CLIPS.values()],
                                  1024, "h264")
    checked = parts = 0
    for clip in list(SAMPLE_CLIPS.values())[:2]:
        data = encode_video(clip, profile)
        c = NalConstraint(tok, profile=profile)
        for n, t in enumerate(tok.encode(data, bos=False, eos=False)[:400]):
            if n % 7 == 3 or c.can_end:  # (and every state where a NAL may open)
                c.tokens.cache.clear()
                c.tokens.parts.clear()  # (single-token entries of the header patterns)
                c.grammar.masks.clear()
                c.grammar.openers.clear()
                ckey, _, okey, _ = c._mask_key()
                for part in (("c",) + ckey if ckey is not None and len(ckey) > 1 else None,
                             ("o",) + okey if okey is not None else None):
                    if part is not None:  # a header-pattern part, one token at a time
                        one = c._token_entry(part)
                        assert ([bool(one(u)) for u in range(tok.vocab_size)]
                                == c._part(part).tolist()), n
                        parts += 1
                c.tokens.parts.clear()
                c.grammar.openers.clear()
                got = [c.allows(u) for u in range(tok.vocab_size)]
                check = c.token_check()
                assert [bool(check(u)) for u in range(tok.vocab_size)] == got, n
                assert got == c.allowed_mask().tolist(), n
                checked += 1
            assert c.allows(t)  # x264's own token
            c.advance(t)
    assert checked > 100 and parts > 20


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bundled_video_model_same_tokens_with_lazy_and_full_masks(bundled_video, seed):
    """Whole generations (2 frames) with the bundled model: lazy masks give the full
    masks' tokens, token for token."""
    from avclm.generate import DoneEvent, NalEvent, generate_video
    from avclm.nal_masks import NalConstraint
    from codeclm.generation.sampling_config import SamplingConfig
    from codeclm.generation.session import FullMasks

    def run(factory):
        nals, stats = [], {}
        for ev in generate_video(bundled_video, 2, config=SamplingConfig(seed=seed),
                                 constraint_factory=factory):
            if isinstance(ev, NalEvent):
                nals.append(ev.data)
            elif isinstance(ev, DoneEvent):
                stats = ev.stats
        return nals, stats

    lazy = run(None)
    full = run(lambda tok, gate: FullMasks(NalConstraint(tok, gate)))
    assert lazy[0] == full[0]
    assert lazy[1]["tokens_sampled"] == full[1]["tokens_sampled"]
