"""The incremental slice automaton and its token masks (avclm.slice_automaton).

- it agrees with the recursive grammar of avclm.mb_grammar (itself checked against
  libavcodec in test_mb_grammar.py): x264 slices fed byte by byte end complete, every
  byte prefix is alive, corrupted slices get the same verdict;
- random walks over token masks (uniform among allowed tokens; no model, no gate) with
  three vocabularies, both profiles: every NAL they complete passes the NAL verifier's
  full check, the strict one-macroblock decode included, and the stream decodes strictly.
"""

from __future__ import annotations

import random

import pytest
import torch

from avclm import mb_grammar as g
from avclm import nal as nalmod
from avclm import slice_automaton as sa
from avclm.bits import BitReader, compose_slice_header, data_bits, parse_slice_fields, rbsp_to_ebsp
from avclm.codec import SAMPLE_CLIPS, encode_video
from avclm.nal_masks import NalConstraint, opens_start_code
from avclm.profile import PAPER, TINY
from avclm.stream import decode_annexb
from avclm.stream_plan import stream_facts
from avclm.verifier import NalVerifier
from codeclm.tokenizer import MIN_VOCAB, ByteTokenizer

PROFILES = {"tiny": TINY, "paper": PAPER}


@pytest.fixture(scope="module")
def encodes() -> dict:
    return {name: {c: encode_video(p, prof) for c, p in SAMPLE_CLIPS.items()}
            for name, prof in PROFILES.items()}


def _feed(auto: sa.SliceAutomaton, rbsp: bytes):
    """Feed RBSP bytes; the states after each byte (None once rejected)."""
    st, out = auto.start, []
    for x in rbsp:
        st = auto.step_byte(st, x) if st is not None else None
        out.append(st)
    return out


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_x264_slices_run_through_the_automaton(encodes, name):
    facts = stream_facts(PROFILES[name])
    for data in encodes[name].values():
        for nal in nalmod.split_annexb(data):
            if not nalmod.is_picture_nal(nal):
                continue
            f, hn, v, t = parse_slice_fields(nal, facts.sps, facts.pps)
            header = (v >> (t - hn), hn)
            auto = sa.SliceAutomaton(header, g.MacroblockContext.of(f, facts.pps, hn))
            states = _feed(auto, v.to_bytes(t // 8, "big"))
            assert all(s is not None for s in states), f
            assert states[-1][3] == sa.DONE
            assert all(s[3] != sa.DONE for s in states[:-1])  # not complete any earlier


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_automaton_agrees_with_the_recursive_grammar(encodes, name):
    """Corrupted slice data (a flipped bit, a truncation, a random tail) gets the same
    verdict from both implementations (all mb_types); with ``canonical`` only the
    macroblock types x264 writes pass."""
    facts = stream_facts(PROFILES[name])
    rng = random.Random(3)
    slices = [n for n in nalmod.split_annexb(encodes[name]["testsrc2_320x240_6s"])
              if nalmod.is_picture_nal(n)]
    outcomes = set()
    for nal in rng.sample(slices, min(150, len(slices))):
        f, hn, v, t = parse_slice_fields(nal, facts.sps, facts.pps)
        ctx = g.MacroblockContext.of(f, facts.pps, hn)
        auto = sa.SliceAutomaton((v >> (t - hn), hn), ctx)
        canonical = sa.SliceAutomaton((v >> (t - hn), hn), ctx, canonical=True)
        dv, dn = data_bits(v, t, hn)
        for bad in ((dv ^ (1 << rng.randrange(dn)), dn), (dv >> 3, max(dn - 3, 0)),
                    ((dv << 12) | rng.getrandbits(12), dn + 12)):
            ok = g.check_slice_data(bad, ctx) is None
            bits = (v >> (t - hn) << bad[1] | bad[0]) << 1 | 1  # header, data, stop bit
            n = hn + bad[1] + 1
            st = auto.step_bits(auto.start, bits, n)
            assert ok == (st is not None and st[3] == sa.DONE), (f, bad)
            outcomes.add(ok)
            st = canonical.step_bits(canonical.start, bits, n)
            if st is not None and st[3] == sa.DONE:
                assert ok and _mb_type(bad, ctx) in sa.CANONICAL_MB_TYPES[f.kind] + (None,)
    assert outcomes == {True, False}


def _mb_type(data: tuple[int, int], ctx: g.MacroblockContext) -> int | None:
    """mb_type of valid slice data (None for P_Skip)."""
    value, n = data
    r = BitReader((value << (-n % 8)).to_bytes((n + 7) // 8, "big"))
    if ctx.kind == nalmod.SLICE_P and r.ue() == 1:
        return None
    return r.ue()


def _uniform_walk(tok, profile, rng, n_bytes: int) -> bytes:
    """Tokens drawn uniformly among the allowed ones (openers favoured so NALs stay
    short), from the stream's first byte, until ``n_bytes`` are written."""
    c = NalConstraint(tok, profile=profile)
    assert c.grammar is not None
    tf = c.tokens
    data = bytearray()
    while len(data) < n_bytes:
        allowed = torch.nonzero(c.allowed_mask()).flatten().tolist()
        assert allowed, "empty mask"
        openers = [a for a in allowed if tf.lead1[a] or tf.zeros[a]]
        t = rng.choice(openers if openers and rng.random() < 0.9 else allowed)
        if t == tok.eos_id:
            continue
        c.advance(t)
        data += tok.token_bytes[t]
    return bytes(data)


@pytest.mark.parametrize("name,vocab", [("tiny", MIN_VOCAB), ("tiny", 384), ("paper", 1024)])
def test_token_walks_give_slices_that_decode(encodes, name, vocab):
    """No model, no gate: every completed NAL of a uniform token walk passes the full
    NAL check (x264's header, emulation prevention, the strict one-macroblock decode),
    and the complete pictures decode strictly as a stream."""
    profile = PROFILES[name]
    tok = ByteTokenizer.train(list(encodes[name].values()), vocab, "h264")
    rng = random.Random(vocab)
    data = _uniform_walk(tok, profile, rng, 5000)
    _, units = nalmod.split_annexb_units(data)
    gate = NalVerifier(profile, after_header=False)
    slices, whole = 0, 0
    for i, unit in enumerate(units[:-1]):  # the last one may be unfinished
        nal = nalmod.strip_start_code(unit)
        assert gate.check(nal) is None, gate.check(nal)
        if gate.observe(nal):
            whole = i + 1  # units up to here hold complete pictures
        slices += nalmod.is_picture_nal(nal)
    assert slices >= 20
    if gate.frames:
        stream = b"".join(units[:whole])
        assert len(decode_annexb(stream, profile, strict=True)) == gate.frames


def test_masks_never_reject_x264_tokens(encodes):
    """The byte-level tokenizations of x264 clips pass the masks token by token."""
    tok = ByteTokenizer.train(list(encodes["tiny"].values()), 384, "h264")
    for data in encodes["tiny"].values():
        c = NalConstraint(tok, profile=TINY)
        for t in tok.encode(data, bos=False, eos=False)[:1500]:
            assert bool(c.allowed_mask()[t])
            c.advance(t)


def test_possible_mask_is_a_superset_or_none_inside_a_macroblock(encodes):
    """possible_mask (what a lazy walk restarts within) holds every allowed token where
    it is given, and is None exactly inside a macroblock's slice data where no NAL may
    end (its superset there would be the payload's byte rules alone): along the
    tokens of an x264 clip."""
    tok = ByteTokenizer.train(list(encodes["tiny"].values()), 384, "h264")
    data = encodes["tiny"]["testsrc2_320x240_6s"]
    c = NalConstraint(tok, profile=TINY)
    kinds = {True: 0, False: 0}
    for t in tok.encode(data, bos=False, eos=False)[:1200]:
        possible = c.possible_mask()
        inside = (not c.closed and not c.can_end and len(c.cur) == 1 and bool(c.gstates)
                  and c.gstates[0] is not None and c.pos >= len(c.cur[0].mask)
                  and c.gstates[0][1][3] == sa.MB)
        assert (possible is None) == inside
        if possible is not None:
            allowed = c.allowed_mask()
            assert bool(possible[:allowed.shape[0]][allowed].all())
            assert int(possible.sum()) < allowed.shape[0]
        kinds[inside] += 1
        c.advance(t)
    assert kinds[True] > 200 and kinds[False] > 100, kinds


def test_escape_bytes_are_not_slice_bits():
    """A token holding an emulation-prevention byte is judged on its RBSP bits; after
    the stop bit an escape is a dead end (only trailing zeros may follow it there)."""
    rb = sa.TokenRbsp([b"\x00\x00\x03\x01", b"\x03", b"\x00"])
    assert rb.trie[2][sa.ESCAPE][1] == [1]  # a lone 03 after two zeros
    assert rb.trie[0][0][0][0][0][sa.ESCAPE][0][1][1] == [0]  # 00 00 <escape> 01
    assert rb.trie[0][3][1] == [1]  # 03 elsewhere is a plain byte
    facts = stream_facts(TINY)
    f = facts.slice_fields("p", 1, 1, None, 1)
    header = compose_slice_header(f, facts.log2_max_frame_num)
    auto = sa.SliceAutomaton(header, g.MacroblockContext.of(f, facts.pps, header[1]))
    skip = auto.step_bits(auto.start, (header[0] << 4) | 0b0101, header[1] + 4)  # skip_run 1, stop
    assert skip[3] == sa.DONE and auto.step_byte(skip, sa.ESCAPE) is None
    assert auto.step_byte(auto.start, sa.ESCAPE) is None  # the header's first byte is > 3


@pytest.mark.parametrize("kind", ["I", "P"])
def test_walked_slices_of_each_kind_decode_alone_and_in_the_stream(encodes, kind):
    """A small version of bench/bench_h264_walks.py (500 slices per kind, both profiles,
    three vocabularies): slices of one kind walked uniformly over the masks with the
    bundled model's trained tokenizer pass the strict one-macroblock check and decode
    strictly inside the canonical stream they replace slices of."""
    from avclm.slice_walks import walk_slices
    from codeclm.model_dir import bundled_model_dir

    bundled = bundled_model_dir("h264")
    tok = (ByteTokenizer.load(bundled / "tokenizer.json") if bundled is not None else
           ByteTokenizer.train(list(encodes["tiny"].values()), 384, "h264"))
    stream = encodes["tiny"]["testsrc2_320x240_6s"]
    r = walk_slices(tok, TINY, stream, kind, TINY.mbs_per_frame, random.Random(1))
    assert r.slices == TINY.mbs_per_frame and r.tokens >= r.slices
    assert r.failed == 0 and r.bad_streams == 0, r


def _token_allowed(auto: sa.SliceAutomaton, state: tuple, token: bytes, z: int) -> bool:
    """Reference for one token: its bytes one by one through step_byte (an
    emulation-prevention byte after two zeros as ESCAPE)."""
    for x in token:
        if z >= 2 and x == 3:
            z, x = 0, sa.ESCAPE
        else:
            z = z + 1 if x == 0 else 0
        state = auto.step_byte(state, x)
        if state is None:
            return False
    return True


def test_trie_masks_equal_token_by_token_checks(encodes):
    """The binary-trie walk with memoized element walks (allowed_tokens) gives exactly
    the tokens whose bytes, fed one by one, continue the slice: at every byte of x264
    slices of both kinds, after no zero byte and after two."""
    facts = stream_facts(TINY)
    tok = ByteTokenizer.train(list(encodes["tiny"].values()), 384, "h264")
    rbsp = sa.TokenRbsp(tok.token_bytes)
    nals = [n for n in nalmod.split_annexb(encodes["tiny"]["testsrc2_320x240_6s"])
            if nalmod.is_picture_nal(n)]
    rng = random.Random(5)
    for nal in (nals[0], *rng.sample(nals[16:], 2)):
        f, hn, v, t = parse_slice_fields(nal, facts.sps, facts.pps)
        auto = sa.SliceAutomaton((v >> (t - hn), hn), g.MacroblockContext.of(f, facts.pps, hn),
                                 canonical=True)
        states = [auto.start] + _feed(auto, v.to_bytes(t // 8, "big"))
        for st in states[1:]:
            for z in (0, 2):
                mask = sa.allowed_tokens(auto, st, rbsp, z)
                ref = [bool(b) and _token_allowed(auto, st, b, z) for b in tok.token_bytes]
                assert mask.tolist() == ref, (f.first_mb, z)


def test_single_token_checks_and_first_tokens_equal_byte_by_byte_references(encodes):
    """SliceGrammar.token_check (a token's RBSP bits stepped at once, or byte by byte
    when it holds an escape) and body_ok (token bits compared with the slice header's
    fixed bits; body_ok_token: one token's entry) give what stepping the token's bytes
    one by one gives: in the states of
    x264 slices of both kinds, after 0, 1 and 2 zero bytes, for a vocabulary with
    escape-holding and header-long tokens."""
    facts = stream_facts(TINY)
    tok = ByteTokenizer.train(list(encodes["tiny"].values()), 384, "h264")
    nals = [n for n in nalmod.split_annexb(encodes["tiny"]["testsrc2_320x240_6s"])
            if nalmod.is_picture_nal(n)]
    rng = random.Random(7)
    picked = (nals[0], *rng.sample(nals[16:], 2))
    extra = [b"\x00\x00\x03\x01", b"\x00\x03\x00", b"\x03\x00\x00\x03", b"\x00\x00\x01"]
    extra += [n[1:9] for n in picked] + [b"\x00\x00\x01" + n[:6] for n in picked]
    vocab = list(tok.token_bytes) + extra
    grammar = sa.SliceGrammar(vocab, facts.pps)
    for nal in picked:
        f, hn, v, t = parse_slice_fields(nal, facts.sps, facts.pps)
        key, auto = grammar.automaton(f, (v >> (t - hn), hn))
        for opener in (False, True):
            ref = [True] * len(vocab)
            for i, b in enumerate(vocab):
                body = b
                if not b:
                    continue  # (special tokens: no bytes)
                if opener:
                    lz = len(b) - len(b.lstrip(b"\x00"))
                    if lz >= len(b) or b[lz] != 1:
                        continue
                    body = b[lz + 1:]
                ref[i] = len(body) < 2 or _token_allowed(auto, auto.start, body[1:], 0)
            # one token at a time (nothing cached yet), then the whole vocabulary
            assert [grammar.body_ok_token(key, opener, i) for i in range(len(vocab))] == ref
            assert grammar.body_ok(key, opener).tolist() == ref
        states = [auto.start] + _feed(auto, v.to_bytes(t // 8, "big"))
        for st in states[1::3]:
            for z in (0, 1, 2):
                check = grammar.token_check(key, st, z)
                got = [bool(check(i)) for i in range(len(vocab))]
                ref = [bool(b) and _token_allowed(auto, st, b, z) for b in vocab]
                assert got == ref, (f.first_mb, z)


def test_accepts_bits_equals_step_bits_along_random_walks(encodes):
    """accepts_bits (a single-token check's walk, which skips the state after bits that
    end with an element) says what step_bits says: from the states of random bit walks
    over x264 P and I slice automata (inside the macroblock, at its end, after the stop
    bit), for bit runs of 1 to 24 bits, random and the continuations x264 wrote."""
    facts = stream_facts(TINY)
    nals = [n for n in nalmod.split_annexb(encodes["tiny"]["testsrc2_320x240_6s"])
            if nalmod.is_picture_nal(n)]
    rng = random.Random(11)
    checked = {True: 0, False: 0}
    for nal in (nals[0], *rng.sample(nals[16:], 3)):
        f, hn, v, t = parse_slice_fields(nal, facts.sps, facts.pps)
        auto = sa.SliceAutomaton((v >> (t - hn), hn), g.MacroblockContext.of(f, facts.pps, hn),
                                 canonical=True)
        states = [s for s in _feed(auto, v.to_bytes(t // 8, "big")) if s is not None]
        for _ in range(40):  # random walks: one bit at a time among the continuing ones
            st = auto.start
            for _ in range(rng.randrange(hn + 1, hn + 200)):
                nxt = [s for s in (auto.step_bits(st, b, 1) for b in (0, 1)) if s is not None]
                if not nxt:
                    break
                st = rng.choice(nxt)
            states.append(st)
        for st in states:
            for _ in range(12):
                n = rng.randrange(1, 25)
                value = rng.getrandbits(n)
                want = auto.step_bits(st, value, n) is not None
                assert auto.accepts_bits(st, value, n) == want, (st[1:4], value, n)
                checked[want] += 1
    assert checked[True] > 200 and checked[False] > 200


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_plainest_completion_finishes_x264_slices_cut_anywhere(encodes, name, explode_frames):
    """Cut an x264 slice after a byte of its slice data (8 cuts per slice) and finish
    it with plainest_completion: the automaton and the recursive grammar accept it, and
    it is never longer than what x264 wrote from the cut. From the start of the data it
    is the shortest macroblock of its kind (8 bits at most: no residual). A stream whose
    slices are each finished so at a random cut decodes strictly (and under ffmpeg's
    explode for tiny) to the same frame count."""
    profile, facts = PROFILES[name], stream_facts(PROFILES[name])
    rng = random.Random(5)
    data = encodes[name]["testsrc2_320x240_6s"]
    _, units = nalmod.split_annexb_units(data)
    out, cuts, at_start = [], 0, {}  # (at_start: slices per kind checked from the start)
    for unit in units:
        nal = nalmod.strip_start_code(unit)
        if not nalmod.is_picture_nal(nal):
            out.append(unit)
            continue
        f, hn, v, t = parse_slice_fields(nal, facts.sps, facts.pps)
        ctx = g.MacroblockContext.of(f, facts.pps, hn)
        auto = sa.SliceAutomaton((v >> (t - hn), hn), ctx, canonical=True)
        rbsp = v.to_bytes(t // 8, "big")
        states = _feed(auto, rbsp)
        first = hn // 8 + 1  # cuts after the first byte that holds slice data
        picks = [k for k in range(first, len(rbsp)) if states[k - 1][3] != sa.DONE]
        for k in rng.sample(picks, min(8, len(picks))):
            value, n = sa.plainest_completion(states[k - 1])
            assert n and n % 8 == 0
            done = rbsp[:k] + value.to_bytes(n // 8, "big")
            end = _feed(auto, done)[-1]
            assert end is not None and end[3] == sa.DONE
            whole, total = int.from_bytes(done, "big"), 8 * len(done)
            assert g.check_slice_data(data_bits(whole, total, hn), ctx) is None
            assert n <= 8 * (len(rbsp) - k)  # no longer than x264's rest
            cuts += 1
        cut = rng.choice(picks) if picks else None
        if cut is None:
            out.append(unit)
            continue
        value, n = sa.plainest_completion(states[cut - 1])
        body = rbsp_to_ebsp(rbsp[:cut] + value.to_bytes(n // 8, "big"))
        out.append(unit[:len(unit) - len(nal)] + nal[:1] + body)
        # from the start of the slice data (mid-byte): the shortest macroblock of its kind
        value, n = sa.plainest_completion(auto.step_bits(auto.start, v >> (t - hn), hn), hn % 8)
        plain = data_bits(value, n, 0)
        assert g.check_slice_data(plain, ctx) is None and plain[1] <= 8
        at_start[f.kind] = at_start.get(f.kind, 0) + 1
    assert cuts > 200 and at_start[nalmod.SLICE_I] and at_start[nalmod.SLICE_P]
    stream = b"".join(out)
    frames = len(decode_annexb(data, profile, strict=True))
    assert len(decode_annexb(stream, profile, strict=True)) == frames
    if name == "tiny":
        assert explode_frames(stream) == frames


@pytest.mark.parametrize("data,zeros,opens", [
    (b"\x00\x00\x01\x65", 0, True), (b"\x00\x00\x00\x01", 0, True), (b"\x00\x01", 1, True),
    (b"\x01\x41", 2, True), (b"\x00", 2, True), (b"\x00\x00\x00", 0, True),
    (b"\x00\x00", 0, False), (b"\x00", 1, False), (b"\x00\x01", 0, False),
    (b"\x01", 1, False), (b"\x00\x00\x03", 0, False), (b"\x41", 2, False), (b"", 2, False)])
def test_opens_start_code(data, zeros, opens):
    """A token opens a start code after ``zeros`` zero bytes: two zeros in all then 01, or
    three zeros in all (two zeros alone may still be an escape's)."""
    assert opens_start_code(data, zeros) is opens


def test_finish_early_gives_tokens_that_complete_the_open_slice(encodes):
    """Along x264's tokens, wherever a slice is open and cannot end yet, a start-code
    token gets finish_early's tokens: each allowed in turn, and the slice they complete
    passes the verifier's full check (x264's header, canonical escapes, the strict
    one-macroblock decode); the model's start code (the token, or its start-code prefix
    where the header it begins does not fit) follows them. Where the slice may end,
    for a token that opens no start code, and with ``finish_early=False``, there are
    none."""
    tok = ByteTokenizer.train(list(encodes["tiny"].values()), 384, "h264")
    sc = next(t for t in range(tok.vocab_size)
              if (tok.token_bytes[t] or b"").startswith(b"\x00\x00\x01"))
    other = next(t for t in range(tok.vocab_size) if (tok.token_bytes[t] or b"\x00")[0] > 3)
    c = NalConstraint(tok, profile=TINY)
    off = NalConstraint(tok, profile=TINY, finish_early=False)
    gate = NalVerifier(TINY, after_header=False)
    rng = random.Random(2)
    stream, observed, checked, at_end, kept = bytearray(), 0, 0, 0, 0
    for t in tok.encode(encodes["tiny"]["testsrc2_320x240_6s"], bos=False, eos=False)[:4000]:
        nals = nalmod.split_annexb(bytes(stream))
        for nal in nals[observed:-1]:  # the NALs a start code has closed since
            gate.observe(nal)
        observed = max(observed, len(nals) - 1)
        if nals and nalmod.is_picture_nal(nals[-1]) and rng.random() < 0.3:
            got = c.finish_early(sc)
            if c.can_end:
                assert got is None
                at_end += 1
            elif got is not None:
                probe = c.copy()
                for x in got:
                    assert probe.allows(x)
                    probe.advance(x)
                # the model's start code follows the finish: the token or a prefix of it
                last = tok.token_bytes[got[-1]]
                if opens_start_code(last, 0):
                    assert tok.token_bytes[sc].startswith(last)
                    got, kept = got[:-1], kept + 1
                else:  # none fits the NAL due here
                    assert not any(opens_start_code(tok.token_bytes[x], probe.z)
                                   and probe.allows(x) for x in [sc, *probe.tokens.prefixes(sc)])
                open_nal = bytes(stream[stream.rfind(b"\x00\x00\x01") + 3:])  # (its zeros too)
                nal = open_nal + b"".join(tok.token_bytes[x] for x in got)
                assert gate.check(nal) is None, gate.check(nal)
                assert c.finish_early(other) is None and off.finish_early(sc) is None
                checked += 1
        c.advance(t)
        off.advance(t)
        stream += tok.token_bytes[t]
    assert checked > 100 and at_end > 5 and kept > checked // 2
