"""The macroblock-layer grammar (avclm.mb_grammar) against x264 and libavcodec.

- every slice x264 writes with the canonical profiles is accepted, whole and at every
  byte prefix (so masks built on the grammar never reject what x264 writes);
- corrupted slices: the grammar's verdict equals the strict one-macroblock decode's, and
  it rejects most of them;
- random walks over the grammar (uniform among the allowed next bits) give slices that
  decode strictly, as the verifier's one-macroblock picture and in a full stream.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from avclm import mb_grammar as g
from avclm import nal as nalmod
from avclm.bits import compose_slice_header, data_bits, nal_bytes, parse_slice_fields
from avclm.codec import SAMPLE_CLIPS, encode_frames, encode_video
from avclm.profile import PAPER, TINY
from avclm.slice_check import MiniDecoder, SliceDecodeCheck
from avclm.stream import decode_annexb
from avclm.stream_plan import stream_facts
from data_tools.synth import pan_frames, random_pan

PROFILES = {"tiny": TINY, "paper": PAPER}


def _synth_clip(profile, seed: int) -> list[np.ndarray]:
    """A data_tools synth pan (the bundled video model's training data)."""
    rng = np.random.default_rng(seed)
    world, vx, vy = random_pan(rng, profile.width, profile.height, profile.frames)
    return list(pan_frames(world, vx, vy, profile.width, profile.height, profile.frames))


@pytest.fixture(scope="module")
def encodes(clip) -> dict:
    """profile name -> {clip name: canonical Annex-B bytes}: the bundled sample clips, a
    lavfi testsrc clip made by the bundled ffmpeg, and two synth pans."""
    out = {}
    for name, profile in PROFILES.items():
        clips = {n: encode_video(p, profile) for n, p in SAMPLE_CLIPS.items()}
        clips["testsrc"] = encode_video(clip("short"), profile)
        for seed in (0, 1):
            clips[f"synth{seed}"] = encode_frames(_synth_clip(profile, seed), profile)
        out[name] = clips
    return out


def _slices(data: bytes, facts):
    """(fields, context, RBSP int, RBSP bits, header bits) of every slice."""
    for nal in nalmod.split_annexb(data):
        if nalmod.is_picture_nal(nal):
            f, hn, v, t = parse_slice_fields(nal, facts.sps, facts.pps)
            yield f, g.MacroblockContext.of(f, facts.pps, hn), v, t, hn


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_every_x264_slice_is_accepted(encodes, name):
    facts = stream_facts(PROFILES[name])
    kinds = set()
    for clip_name, data in encodes[name].items():
        for f, ctx, v, t, hn in _slices(data, facts):
            kinds.add(f.kind)
            assert g.check_slice_data(data_bits(v, t, hn), ctx) is None, (clip_name, f)
            tail = t - hn
            assert g.prefix_state(v & ((1 << tail) - 1), tail, ctx) == g.ACCEPT_COMPLETE
    assert kinds == {nalmod.SLICE_I, nalmod.SLICE_P}


def test_every_byte_prefix_of_x264_slices_is_a_prefix(encodes):
    """What a token mask asks: after each whole byte, the slice can still be completed."""
    facts = stream_facts(TINY)
    rng = random.Random(0)
    for data in encodes["tiny"].values():
        slices = list(_slices(data, facts))
        for f, ctx, v, t, hn in rng.sample(slices, 40):
            for end in range(8 * (hn // 8 + 1), t, 8):  # RBSP bytes after the header's
                n = end - hn
                state = g.prefix_state((v >> (t - end)) & ((1 << n) - 1), n, ctx)
                assert state == g.ACCEPT_PREFIX, (f, end, t)


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_corrupted_slices_are_judged_as_libavcodec_does(encodes, name):
    """One flipped bit: the grammar accepts exactly the slices the strict one-macroblock
    decode accepts; truncated slice data is rejected."""
    facts = stream_facts(PROFILES[name])
    check = SliceDecodeCheck(facts)
    rng = random.Random(1)
    slices = list(_slices(encodes[name]["testsrc2_320x240_6s"], facts))
    verdicts = {True: 0, False: 0}
    for f, ctx, v, t, hn in rng.sample(slices, 120):
        dv, dn = data_bits(v, t, hn)
        bad = (dv ^ (1 << rng.randrange(dn)), dn)
        ok = g.check_slice_data(bad, ctx) is None
        assert ok == (check.check(f, bad) is None), (f, bad)
        verdicts[ok] += 1
        if dn > 8:
            cut = rng.randrange(1, dn // 2)
            assert g.check_slice_data((dv >> cut, dn - cut), ctx) is not None
    assert verdicts[False] > 2 * verdicts[True]


def test_decode_verdicts_depend_on_the_slice_alone(encodes):
    """What the verdict memo of SliceDecodeCheck rests on: a slice's verdict is the same
    whatever the test decoder decoded before (fresh MiniDecoders fed the same slices,
    good and one-bit-corrupted, I and P, in two orders), and a repeated slice gets that
    verdict from the memo without a decode."""
    facts = stream_facts(TINY)
    rng = random.Random(4)
    items = []
    for f, ctx, v, t, hn in _slices(encodes["tiny"]["testsrc"], facts):
        dv, dn = data_bits(v, t, hn)
        items.append((f, (dv, dn)))
        items.append((f, (dv ^ (1 << rng.randrange(dn)), dn)))
    items = rng.sample(items, 80)

    def verdicts(order):
        check = SliceDecodeCheck(facts)
        got = {}
        for i in order:
            got[i] = check.check(*items[i])
        return got, check

    forward, check = verdicts(range(len(items)))
    backward, _ = verdicts(reversed(range(len(items))))
    assert forward == backward
    assert 10 < sum(r is None for r in forward.values()) < len(items) - 10  # both verdicts
    # the same, each slice decoded by a decoder that saw other slices before it
    for i in rng.sample(range(len(items)), 20):
        f, data = items[i]
        dec = MiniDecoder(facts, check._log2_for(f.first_mb), f.is_idr)
        for j in rng.sample(range(len(items)), 5):
            g_, d_ = items[j]
            if g_.is_idr == f.is_idr and check._log2_for(g_.first_mb) == dec.log2:
                dec.check(g_, d_)
        assert dec.check(f, data) == forward[i]
    decodes = check.decodes
    again = [check.check(*item) for item in items]
    assert again == [forward[i] for i in range(len(items))]
    assert check.decodes == decodes and check.memo_hits >= len(items)


def _walk(ctx: g.MacroblockContext, rng: random.Random) -> tuple[int, int]:
    """Slice data drawn bit by bit, uniformly among the bits some valid slice continues
    with, until a macroblock is complete."""
    v, n = 0, 0
    while n == 0 or g.parse_macroblock_bits(v, n, ctx) != n:
        options = []
        for b in (0, 1):
            try:
                end = g.parse_macroblock_bits((v << 1) | b, n + 1, ctx)
            except g.SyntaxReject:
                continue
            if end is None or end == n + 1:
                options.append(b)
        assert options, "the grammar has a dead end"
        v, n = (v << 1) | rng.choice(options), n + 1
    return v, n


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_random_walks_decode_strictly(name):
    """Walked I and P slices (P with 1..3 references) decode as the verifier's
    one-macroblock picture; a whole IDR picture and a P picture of walked slices decode
    strictly in a full stream."""
    profile = PROFILES[name]
    facts = stream_facts(profile)
    check = SliceDecodeCheck(facts)
    rng = random.Random(2)
    L = facts.log2_max_frame_num
    seen_types = set()
    for kind in ("idr", "p"):
        for i in range(60 if name == "tiny" else 30):
            since = 1 + i % facts.max_refs
            f = facts.slice_fields(kind, rng.randrange(facts.mbs), 0 if kind == "idr" else since,
                                   0 if kind == "idr" else None, since)
            ctx = g.MacroblockContext.of(f, facts.pps, compose_slice_header(f, L)[1])
            data = _walk(ctx, rng)
            seen_types.add((kind, data[0] >> max(0, data[1] - 6), min(6, data[1])))  # mb_type..
            assert check.check(f, data) is None, (kind, f, data)
    assert len(seen_types) > 8  # the walks reach different macroblock types
    if name != "tiny":
        return
    # full stream: IDR picture then P pictures, every macroblock walked
    units = [nalmod.LONG_START_CODE + facts.sps_nal, nalmod.LONG_START_CODE + facts.pps_nal]
    for pic in range(3):
        kind = "idr" if pic == 0 else "p"
        for mb in range(facts.mbs):
            f = facts.slice_fields(kind, mb, pic, 0 if kind == "idr" else None, pic)
            header = compose_slice_header(f, L)
            data = _walk(g.MacroblockContext.of(f, facts.pps, header[1]), rng)
            sc = nalmod.LONG_START_CODE if mb == 0 and pic else nalmod.START_CODE
            units.append(sc + nal_bytes(f.nal_byte, header, data))
    assert len(decode_annexb(b"".join(units), profile, strict=True)) == 3


def test_tables_are_prefix_codes():
    """No code of a VLC table is a prefix of another (Tables 9-5, 9-7..9-10)."""
    tables = [g.coeff_token_vlc(nc, m) for nc in (-1, 0, 2, 4, 8) for m in (4, 15, 16)
              if (nc == -1) == (m == 4)]
    tables += [g.total_zeros_vlc(tc, 16) for tc in range(1, 16)]
    tables += [g.total_zeros_vlc(tc, 4) for tc in range(1, 4)]
    tables += [g.run_before_vlc(z) for z in range(1, 15)]
    for t in tables:
        assert t.codes and not set(t.codes) & t.prefixes
    # the full coeff_token tables hold 62 codes each (TrailingOnes <= min(TotalCoeff, 3))
    assert all(len(g.coeff_token_vlc(nc, 16).codes) == 62 for nc in (0, 2, 4, 8))
    assert len(g.coeff_token_vlc(-1, 4).codes) == 14
