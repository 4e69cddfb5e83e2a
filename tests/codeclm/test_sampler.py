"""The shared sampler: logits filters, seeds, the KV-cache forward, batches, constraints,
unit splitting, verdicts and rollback. Tiny random Llama models (hidden 32, 2 layers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codeclm.errors import ConfigError
from codeclm.generation.forward import KVCacheLM
from codeclm.generation.sampling import (
    SamplingConfig,
    filter_logits,
    make_generators,
    sample_tokens,
    token_probs,
)
from codeclm.generation.session import ACCEPT, Reject, Stop, generate
from codeclm.models import llama_config
from codeclm.streaming import UnitSplitter
from codeclm.tokenizer import ByteTokenizer

GREEDY = SamplingConfig(temperature=0)


def _nal_stream(rng, n=12) -> bytes:
    return b"".join(
        b"\x00\x00\x01" + rng.integers(1, 256, int(rng.integers(4, 16)), dtype=np.uint8).tobytes()
        for _ in range(n)
    )


@pytest.fixture(scope="module")
def tok():
    rng = np.random.default_rng(0)
    return ByteTokenizer.train([_nal_stream(rng) for _ in range(30)], 320, "h264")


def _model(tok, kv_heads=2, context=256, seed=0):
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = llama_config("tiny", tok.vocab_size, context, hidden_size=32, intermediate_size=64,
                       num_attention_heads=4, num_key_value_heads=kv_heads)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def model(tok):
    return _model(tok)


@pytest.fixture(scope="module")
def prompts(tok):
    rng = np.random.default_rng(5)
    data = _nal_stream(rng, 6)
    return [tok.encode(data[:n], eos=False) for n in (40, 9, 25)]


def reference_greedy(model, prompt: list[int], n: int) -> list[int]:
    """No KV cache: the whole sequence through the Hugging Face forward at every step.
    Like the sampler, never picks <pad>, <s> or a reserved id (EOS is allowed)."""
    ids = list(prompt)
    banned = [0, 1] + list(range(3, 11))  # <pad>, <s>, <reserved_0..7>; </s> = 2 stays
    with torch.inference_mode():
        for _ in range(n):
            logits = model(torch.tensor([ids])).logits[0, -1]
            logits[banned] = float("-inf")
            ids.append(int(logits.argmax()))
    return ids[len(prompt):]


# ----------------------------------------------------------------------------- filters
def test_top_k_mask_exact():
    logits = torch.tensor([[1.0, 5.0, 3.0, 3.0, -2.0, 4.0]])
    kept = torch.isfinite(filter_logits(logits, top_k=3))[0].tolist()
    assert kept == [False, True, True, True, False, True]  # the tie at the 3rd value is kept
    kept = torch.isfinite(filter_logits(logits, top_k=2))[0].tolist()
    assert kept == [False, True, False, False, False, True]


def test_top_p_mask_exact():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    logits = probs.log()
    assert torch.isfinite(filter_logits(logits, top_p=0.8))[0].tolist() == [
        False,
        True,
        False,
        True,
    ]
    assert torch.isfinite(filter_logits(logits, top_p=0.81))[0].tolist() == [
        False,
        True,
        True,
        True,
    ]
    assert torch.isfinite(filter_logits(logits, top_p=0.3))[0].tolist() == [
        False,
        True,
        False,
        False,
    ]
    # the top token survives any top_p
    assert torch.isfinite(filter_logits(logits, top_p=1e-6))[0].tolist() == [
        False,
        True,
        False,
        False,
    ]


@pytest.mark.parametrize(
    "t,k,p", [(1.0, 50, 0.9), (0.7, 10, 1.0), (1.3, None, 0.8), (1.0, 40, 0.95)]
)
def test_filters_match_transformers_warpers(t, k, p):
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    logits = torch.randn(6, 300, generator=torch.Generator().manual_seed(1)) * 3
    ref = TemperatureLogitsWarper(t)(None, logits.clone())
    if k:
        ref = TopKLogitsWarper(k)(None, ref)
    if p < 1.0:
        ref = TopPLogitsWarper(p)(None, ref)
    ours = filter_logits(logits, t, k, p)
    assert torch.equal(torch.isfinite(ours), torch.isfinite(ref))
    assert torch.allclose(ours.softmax(-1), ref.softmax(-1), atol=1e-6)
    # the fast candidate path (top-k first, top-p on k values) draws from the same distribution
    assert torch.allclose(token_probs(logits, t, k, p), ours.softmax(-1), atol=1e-6)


def test_sampling_frequencies_follow_probabilities():
    probs = torch.tensor([0.1, 0.6, 0.3, 0.0])
    logits = probs.log()[None]
    g = make_generators(123, 1)
    counts = np.zeros(4)
    for _ in range(3000):
        counts[int(sample_tokens(logits, g, 1.0, None, None)[0])] += 1
    assert counts[3] == 0
    assert np.allclose(counts / counts.sum(), probs.numpy(), atol=0.03)


def test_sampling_config_validation():
    with pytest.raises(ConfigError):
        SamplingConfig(temperature=-1)
    with pytest.raises(ConfigError):
        SamplingConfig(top_p=0.0)
    with pytest.raises(ConfigError):
        SamplingConfig(top_k=-3)


# ----------------------------------------------------------------------------- model + cache
@pytest.mark.parametrize("kv_heads,fuse", [(4, True), (2, True), (2, False)])
def test_kv_cache_logits_match_transformers(tok, kv_heads, fuse, prompts, monkeypatch):
    from codeclm.generation import forward

    if not fuse:  # the path big models take: the module's own projections, unfused
        monkeypatch.setattr(forward, "FUSE_MAX_PARAMS", 0)
    model = _model(tok, kv_heads)
    ids = prompts[0]
    kv = KVCacheLM(model, 1)
    last = kv.prefill(0, torch.tensor(ids[:-1]))
    with torch.inference_mode():
        ref = model(torch.tensor([ids])).logits[0]
    assert torch.allclose(last, ref[-2], atol=1e-4)
    got = kv.decode(torch.tensor([ids[-1]]), [len(ids) - 1])
    assert torch.allclose(got[0], ref[-1], atol=1e-4)
    assert ("qkv" in kv.layers[0]) == fuse


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_greedy_equals_no_cache_reference(tok, kv_heads, prompts):
    model = _model(tok, kv_heads)
    res = generate(model, tok, prompts, GREEDY, max_new_tokens=40)
    for p, got, why in zip(prompts, res.tokens, res.reasons):
        ref = reference_greedy(model, p, len(got))
        assert got == ref
        assert why in ("length", "eos")
        assert len(got) == 40 or got[-1] == tok.eos_id


def test_seeds_reproduce(tok, model, prompts):
    cfg = SamplingConfig(1.0, 50, 0.9, seed=7)
    a = generate(model, tok, prompts[:1], cfg, max_new_tokens=60, min_new_tokens=60)
    b = generate(model, tok, prompts[:1], cfg, max_new_tokens=60, min_new_tokens=60)
    c = generate(model, tok, prompts[:1], SamplingConfig(1.0, 50, 0.9, seed=8),
                 max_new_tokens=60, min_new_tokens=60)
    assert a.tokens == b.tokens
    assert a.tokens != c.tokens
    assert a.stats["seed"] == 7


def test_batch_rows_equal_single_runs_with_seed_plus_row(tok, model, prompts):
    """Row r of a batch with seed s == a batch-1 run with seed s + r (different prompt lengths)."""
    batch = generate(model, tok, prompts, SamplingConfig(1.0, 40, 0.95, seed=11), max_new_tokens=50)
    for r, p in enumerate(prompts):
        single = generate(
            model, tok, [p], SamplingConfig(1.0, 40, 0.95, seed=11 + r), max_new_tokens=50
        )
        assert single.tokens[0] == batch.tokens[r]


def test_same_length_prompts_prefilled_together_equal_one_row_at_a_time(tok, model, prompts):
    """Distinct prompts of one length go through one batched prefill (KVCacheLM.prefill_rows):
    the cache it writes gives the same decode logits, bit for bit, as row-by-row prefills,
    and a batch mixing shared lengths, a repeated prompt and a lone one samples what
    batch-1 runs sample."""
    rng = np.random.default_rng(9)
    ids = torch.tensor(rng.integers(3, tok.vocab_size, (3, 17)))
    one, together = KVCacheLM(model, 3, 40), KVCacheLM(model, 3, 40)
    singles = torch.stack([one.prefill(r, ids[r]) for r in range(3)])
    logits = together.prefill_rows([2, 0, 1], ids[[2, 0, 1]])
    torch.testing.assert_close(logits, singles[[2, 0, 1]])
    step = torch.tensor(rng.integers(3, tok.vocab_size, 3))
    assert torch.equal(one.decode(step, [17] * 3), together.decode(step, [17] * 3))
    a, b = ([tok.bos_id] + ids[r].tolist()[:8] for r in (1, 2))  # distinct, one length
    same = [a, b, a, prompts[0]]
    cfg = SamplingConfig(1.0, 40, 0.95, seed=3)
    batch = generate(model, tok, same, cfg, max_new_tokens=20)
    for r, p in enumerate(same):
        single = generate(model, tok, [p], SamplingConfig(1.0, 40, 0.95, seed=3 + r),
                          max_new_tokens=20)
        assert single.tokens[0] == batch.tokens[r]


@pytest.mark.parametrize("threads", [1, 2])
def test_extend_equals_one_decode_per_token(tok, model, threads):
    """``KVCacheLM.extend`` (jump-forward's feed of a few tokens at once: the C kernel
    over a view repeating the row with 1 thread, a prefill otherwise) leaves the cache
    and gives the logits after the last token that one decode per token does."""
    rng = np.random.default_rng(4)
    ids = torch.tensor(rng.integers(3, tok.vocab_size, 30))
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for S in (2, 3, 6):
            a, b = KVCacheLM(model, 2, 40), KVCacheLM(model, 2, 40)
            for kv in (a, b):
                kv.prefill(1, ids[:20])
            got = a.extend(1, ids[20:20 + S], 20)
            for j in range(S):
                want = b.decode(torch.tensor([0, int(ids[20 + j])]), [0, 20 + j])[1]
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(a.kv[:, :, 1, :, :20 + S], b.kv[:, :, 1, :, :20 + S],
                                       atol=1e-6, rtol=1e-5)
    finally:
        torch.set_num_threads(saved)


def test_min_new_tokens_blocks_eos(tok, model, prompts):
    res = generate(model, tok, prompts[:1], SamplingConfig(1.5, None, None, seed=0),
                   max_new_tokens=80, min_new_tokens=80)
    assert len(res.tokens[0]) == 80 and tok.eos_id not in res.tokens[0]


def test_special_tokens_other_than_eos_are_never_sampled(tok, model, prompts):
    res = generate(model, tok, prompts, SamplingConfig(5.0, None, None, seed=0),
                   max_new_tokens=200, min_new_tokens=200)
    specials = set(tok.special_ids) - {tok.eos_id}
    assert not specials & {t for row in res.tokens for t in row}


def test_prompt_errors(tok, model):
    with pytest.raises(ConfigError):
        generate(model, tok, [[]], GREEDY, max_new_tokens=4)
    with pytest.raises(ConfigError):
        generate(model, tok, [[tok.bos_id] * 300], GREEDY, max_length=256)
    with pytest.raises(ConfigError):
        generate(model, tok, [[tok.vocab_size + 5]], GREEDY, max_new_tokens=4)


# ----------------------------------------------------------------------------- constraints
class EvenBytes:
    """Allows only byte tokens of even byte values; done after ``n`` tokens."""

    def __init__(self, tok, n):
        self.tok, self.n, self.seen = tok, n, 0
        self.mask = torch.zeros(tok.vocab_size, dtype=torch.bool)
        self.mask[[tok.byte_ids[b] for b in range(0, 256, 2)]] = True

    @property
    def done(self):
        return self.seen >= self.n

    def allowed_mask(self):
        return self.mask

    def advance(self, token_id):
        assert self.mask[token_id], token_id
        self.seen += 1

    def copy(self):
        c = EvenBytes.__new__(EvenBytes)
        c.tok, c.n, c.seen, c.mask = self.tok, self.n, self.seen, self.mask
        return c


def test_constraint_masks_and_done_forces_eos(tok, model, prompts):
    cons = [EvenBytes(tok, 30), EvenBytes(tok, 12)]
    res = generate(model, tok, prompts[:2], SamplingConfig(1.0, 50, 1.0, seed=3),
                   max_new_tokens=100, constraints=cons)
    for r, n in enumerate((30, 12)):
        toks = res.tokens[r]
        assert len(toks) == n + 1 and toks[-1] == tok.eos_id
        assert all(
            tok.token_bytes[t][0] % 2 == 0 and len(tok.token_bytes[t]) == 1 for t in toks[:-1]
        )
        assert res.reasons[r] == "eos"


# ----------------------------------------------------------------------------- units
@given(st.data())
@settings(max_examples=40, deadline=None)
def test_splitter_matches_annexb_split_for_any_tokenization(data):
    """Start codes found across token boundaries; units == nal.split_annexb_units."""
    from avclm import nal

    seed = data.draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    stream = b"".join((b"\x00\x00\x00\x01" if rng.random() < 0.3 else b"\x00\x00\x01")
                      + rng.integers(0, 4, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
                      for _ in range(8))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=20))))
    pieces = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]
    sp = UnitSplitter("h264")
    units = []
    for i, piece in enumerate(pieces):
        units += sp.push(i, piece)
    last = sp.flush()
    units += [last] if last else []
    assert [u.data for u in units] == nal.split_annexb_units(stream)[1]
    assert [u.index for u in units] == list(range(len(units)))
    for u in units:  # first_token/first_offset locate each unit's first byte
        start = sum(len(p) for p in pieces[:u.first_token]) + u.first_offset
        assert stream[start:start + len(u.data)] == u.data


def test_splitter_jpeg_markers_close_units():
    sp = UnitSplitter("jpeg")
    got = []
    for i, t in enumerate([b"ab\xff", b"\xd0cd", b"\xff\xd1", b"ee\xff\xd9"]):
        got += [u.data for u in sp.push(i, t)]
    assert got == [b"ab\xff\xd0", b"cd\xff\xd1", b"ee\xff\xd9"]


def test_units_stream_and_cover_the_output(tok, model, prompts):
    seen = []
    res = generate(model, tok, prompts[:2], SamplingConfig(seed=2), max_new_tokens=120,
                   on_unit=lambda r, u: seen.append((r, u.index, u.data)))
    for r in range(2):
        units = [d for rr, _, d in seen if rr == r]
        assert units == res.units[r]
        assert b"".join(units) == tok.decode(res.tokens[r])
        assert all(u.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")) for u in units[1:])


def test_stop_verdict_ends_row_after_n_units(tok, model, prompts):
    def on_unit(r, u):
        return Stop() if u.index == 2 else ACCEPT

    res = generate(model, tok, prompts[:1], SamplingConfig(seed=4), max_new_tokens=400,
                   min_new_tokens=400, on_unit=on_unit)
    assert len(res.units[0]) == 3 and res.reasons == ["stop"]


def test_rejected_units_are_resampled_from_a_rolled_back_cache(tok, model, prompts):
    """Greedy decoding with every unit rejected once gives exactly the plain greedy output:
    the cache after a rollback is the cache before the unit."""
    plain = generate(model, tok, prompts, GREEDY, max_new_tokens=60)
    tries = {}

    def reject_once(r, u):
        key = (r, u.index)
        tries[key] = tries.get(key, 0) + 1
        assert u.attempt == tries[key] - 1
        return Reject() if tries[key] == 1 else ACCEPT

    again = generate(model, tok, prompts, GREEDY, max_new_tokens=60, on_unit=reject_once)
    assert again.tokens == plain.tokens
    assert again.units == plain.units
    assert again.stats["rejected"] == sum(1 for v in tries.values() if v >= 2) > 0


def test_rollback_in_one_row_leaves_the_others_alone(tok, model, prompts):
    cfg = SamplingConfig(1.0, 50, 0.9, seed=21)
    plain = generate(model, tok, prompts, cfg, max_new_tokens=60, min_new_tokens=60)
    res = generate(model, tok, prompts, cfg, max_new_tokens=60, min_new_tokens=60,
                   on_unit=lambda r, u: Reject() if r == 1 and u.attempt < 2 else ACCEPT)
    assert res.tokens[0] == plain.tokens[0] and res.tokens[2] == plain.tokens[2]
    assert res.tokens[1] != plain.tokens[1]


def test_replacement_is_forced_and_the_model_continues_from_it(tok, model, prompts):
    repl = b"\x00\x00\x01\x41\x42\x43"

    def on_unit(r, u):
        return Reject(replacement=repl) if u.index == 1 and not u.replaced else ACCEPT

    prompt = prompts[1]  # greedy writes several units after this one
    res = generate(model, tok, [prompt], GREEDY, max_new_tokens=50, on_unit=on_unit)
    units, toks = res.units[0], res.tokens[0]
    assert units[1] == repl and len(units) > 2
    # after the forced unit the model goes on exactly as a no-cache greedy decode would
    assert tok.decode(toks).startswith(units[0] + repl)
    n = _tokens_covering(tok, toks, len(units[0] + repl))
    assert toks[n:] == reference_greedy(model, prompt + toks[:n], len(toks) - n)


def _tokens_covering(tok, ids, nbytes):
    n, i = 0, 0
    while n < nbytes:
        n += len(tok.token_bytes[ids[i]] or b"")
        i += 1
    return i


def test_max_unit_tokens_judges_truncated_units(tok, model, prompts):
    seen = []

    def on_unit(r, u):
        seen.append(u)
        return Stop(keep=False) if u.truncated else ACCEPT

    res = generate(model, tok, prompts[:1], SamplingConfig(seed=9), max_new_tokens=300,
                   min_new_tokens=300, max_unit_tokens=3, on_unit=on_unit)
    assert res.reasons == ["stop"] and seen[-1].truncated and seen[-1].n_tokens == 3


def test_context_full_hook_restarts_the_row(tok, model, prompts):
    calls = []

    def full(r, row):
        calls.append(len(row.tokens))
        return [tok.bos_id] if len(calls) < 3 else None

    res = generate(model, tok, prompts[:1], SamplingConfig(seed=1), max_length=64,
                   min_new_tokens=1000, on_context_full=full)
    assert calls == [64, 64, 64]
    assert res.reasons == ["context"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_bf16_generation(tok, prompts):
    model = _model(tok).to("cuda", torch.bfloat16)
    res = generate(
        model, tok, prompts, SamplingConfig(seed=0), max_new_tokens=30, min_new_tokens=30
    )
    assert [len(t) for t in res.tokens] == [30, 30, 30]
    greedy = generate(model, tok, prompts[:1], GREEDY, max_new_tokens=20)
    assert greedy.tokens == generate(model, tok, prompts[:1], GREEDY, max_new_tokens=20).tokens
