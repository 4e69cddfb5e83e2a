"""avclm.verifier: NAL checks and token masks against real x264 streams and libavcodec.

Real canonical encodings (smooth synthetic clips, the bundled sample clips, and clips
with scene cuts that make x264 write a non-IDR I picture and a second IDR with its
SPS/PPS) must pass, NAL by NAL and token by token; corrupted slices must fail, and a
slice the check accepts must decode inside the real stream under the strict decoder;
a random tiny model generating through ``avclm.generate`` with the verifier must give
streams the strict decoder takes, with exactly the asked frame count.
"""

from __future__ import annotations

import inspect
import random
import re

import av
import numpy as np
import pytest
import torch

from avclm import nal as nalmod
from avclm import slice_automaton
from avclm.bits import compose_slice_header, parse_slice_fields
from avclm.bits import data_bits as _data_bits
from avclm.bits import nal_bytes as _nal_bytes
from avclm.codec import SAMPLE_CLIPS, encode_frames, encode_video
from avclm.nal_masks import NalConstraint
from avclm.profile import PAPER, TINY
from avclm.slice_check import MiniDecoder, SliceDecodeCheck
from avclm.stream import decode_annexb
from avclm.stream_plan import PlanState, stream_facts
from avclm.verifier import NalVerifier
from codeclm.errors import DecodeError
from codeclm.streaming import UnitSplitter
from codeclm.tokenizer import MIN_VOCAB, ByteTokenizer


# ----------------------------------------------------------------------------- streams
def _scene_cut_frames(profile, cuts: set[int]) -> list[np.ndarray]:
    """Flat grey pictures alternating with smooth moving patterns at ``cuts``: x264
    codes a cut nearer than keyint_min to the last IDR as a non-IDR I picture, a later
    one as an IDR picture (with SPS and PPS before it)."""
    h, w = profile.height, profile.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames, seg = [], 0
    for i in range(profile.frames):
        seg += i in cuts
        if seg % 2:
            p = np.random.default_rng(seg).uniform(0.02, 0.3, 6)
            ch = [
                127 + 120 * np.sin(xx * p[c] + yy * p[c + 3] + 0.3 * i + 2 * seg) for c in range(3)
            ]
            frames.append(np.clip(np.stack(ch, -1), 0, 255).astype(np.uint8))
        else:
            frames.append(np.full((h, w, 3), 20 * seg, np.uint8))
    return frames


@pytest.fixture(scope="module")
def streams(smooth_frames) -> dict:
    """profile name -> {clip name: canonical Annex-B bytes}."""
    out = {}
    for profile in (TINY, PAPER):
        clips = {name: encode_video(path, profile) for name, path in SAMPLE_CLIPS.items()}
        clips["scene_cuts"] = encode_frames(_scene_cut_frames(profile, {1, 4, 8, 12}), profile)
        if profile is TINY:
            clips["smooth"] = encode_frames(smooth_frames(TINY), TINY)
        out[profile.name] = clips
    return out


PROFILES = {"tiny": TINY, "paper": PAPER}


def _summary(data: bytes, profile) -> list[str]:
    """Per NAL: "sps", "pps" or "<idr|p|i><first_mb>"."""
    sps = nalmod.parse_sps(nalmod.split_annexb(data)[0])
    out = []
    for nal in nalmod.split_annexb(data):
        t = nalmod.nal_type(nal)
        if t in (nalmod.NAL_SPS, nalmod.NAL_PPS):
            out.append("sps" if t == nalmod.NAL_SPS else "pps")
        else:
            h = nalmod.parse_slice_header(nal, sps)
            kind = "idr" if h.is_idr else h.kind.lower()
            out.append(f"{kind}{h.first_mb}")
    return out


# ----------------------------------------------------------------------------- NAL check
@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_every_canonical_nal_passes_the_check(streams, name):
    profile = PROFILES[name]
    for clip, data in streams[name].items():
        gate = NalVerifier(profile, after_header=False)
        for i, nal in enumerate(nalmod.split_annexb(data)):
            assert gate.check(nal) is None, (clip, i, gate.check(nal))
            assert gate.fits(nal)
            gate.observe(nal)
        assert gate.frames == profile.frames
        assert gate.stats.failed == 0 and gate.stats.passed == gate.stats.nals_checked
    # the scene-cut clip holds what the plan must allow: a non-IDR I picture and a
    # second IDR picture after its own SPS/PPS, with idr_pic_id 1
    kinds = _summary(streams[name]["scene_cuts"], profile)
    assert "i0" in kinds and kinds.count("sps") >= 2 and kinds.count("idr0") >= 2
    ids = [parse_slice_fields(n, stream_facts(profile).sps, stream_facts(profile).pps)[0].idr_pic_id
           for n in nalmod.split_annexb(streams[name]["scene_cuts"]) if n[0] == 0x65]
    assert set(ids) == {0, 1}


def test_slice_headers_parse_and_compose_exactly(streams):
    for name, clips in streams.items():
        facts = stream_facts(PROFILES[name])
        for data in clips.values():
            for nal in nalmod.split_annexb(data):
                if not nalmod.is_picture_nal(nal):
                    continue
                fields, hn, value, total = parse_slice_fields(nal, facts.sps, facts.pps)
                assert compose_slice_header(fields, facts.log2_max_frame_num) == (
                    value >> (total - hn),
                    hn,
                )


def _strict_ok(units: list[bytes], i: int, nal: bytes, profile) -> bool:
    """Whether the stream with NAL ``i`` replaced by ``nal`` decodes strictly, whole."""
    m = nalmod.START_CODE_RE.match(units[i])
    data = b"".join(units[:i]) + units[i][:m.end()] + nal + b"".join(units[i + 1:])
    try:
        return len(decode_annexb(data, profile, strict=True)) == profile.frames
    except DecodeError:
        return False


def _corruptions(nal: bytes, rng: random.Random) -> dict[str, list[bytes]]:
    """Damaged copies of a slice NAL (none contains a start code or ends in 00)."""
    def ok(b: bytes) -> bool:
        return bool(b) and b[-1] != 0 and not nalmod.START_CODE_RE.search(b)

    out = {
        "truncated": [nal[:-1], nal[: len(nal) // 2 + 1]],
        "garbage": [
            nal + bytes([rng.randrange(1, 256)]),
            nal + bytes(rng.randrange(1, 256) for _ in range(3)),
        ],
        "header": [],
        "data": [],
    }
    for _ in range(2):  # flip a bit in the first payload byte (first_mb, slice_type)
        b = bytearray(nal)
        b[1] ^= 0x80 >> rng.randrange(8)
        out["header"].append(bytes(b))
    for _ in range(4):
        b = bytearray(nal)
        bit = rng.randrange(8, 8 * len(b))
        b[bit // 8] ^= 0x80 >> (bit % 8)
        out["data"].append(bytes(b))
    return {k: [b for b in v if ok(b) and b != nal] for k, v in out.items()}


@pytest.mark.parametrize("name,step", [("tiny", 1), ("paper", 37)])
def test_corrupted_slices_are_rejected_and_accepted_ones_decode(streams, name, step):
    """Truncation, appended bytes and header damage always fail; a bit flip in the
    slice data fails unless it makes another valid slice, which the strict decoder
    then takes inside the real stream (the check is sound)."""
    profile = PROFILES[name]
    data = streams[name][next(iter(SAMPLE_CLIPS))]
    _, units = nalmod.split_annexb_units(data)
    rng = random.Random(0)
    gate = NalVerifier(profile, after_header=False)
    counts = {}
    for i, unit in enumerate(units):
        nal = nalmod.strip_start_code(unit)
        if nalmod.is_picture_nal(nal) and i % step == 0:
            for kind, bad in _corruptions(nal, rng).items():
                for b in bad:
                    accepted = gate.check(b) is None
                    counts[kind, accepted] = counts.get((kind, accepted), 0) + 1
                    if accepted:
                        assert kind == "data", (kind, i, nal.hex(), b.hex())
                        assert _strict_ok(units, i, b, profile), (i, nal.hex(), b.hex())
        assert gate.check(nal) is None  # the real one still passes after the failures
        gate.observe(nal)
    for kind in ("truncated", "garbage", "header"):
        assert counts.get((kind, False), 0) > 0 and (kind, True) not in counts
    rejected, accepted = counts.get(("data", False), 0), counts.get(("data", True), 0)
    assert rejected > 3 * accepted  # most random flips break the slice


def test_damage_the_strict_decoder_sees_is_rejected(streams):
    """The other direction on data flips: where the real strict decode fails, the
    one-macroblock check fails too."""
    data = streams["tiny"]["smooth"]
    _, units = nalmod.split_annexb_units(data)
    rng = random.Random(1)
    gate = NalVerifier(TINY, after_header=False)
    both = 0
    for i, unit in enumerate(units):
        nal = nalmod.strip_start_code(unit)
        if nalmod.is_picture_nal(nal) and i % 3 == 0:
            for b in _corruptions(nal, rng)["data"]:
                if not _strict_ok(units, i, b, TINY):
                    assert gate.check(b) is not None, (i, b.hex())
                    both += 1
        gate.observe(nal)
    assert both > 10


def _pcm_slice(facts, mb: int, rng: random.Random) -> bytes:
    """An IDR slice holding an I_PCM macroblock at address ``mb``: mb_type 25,
    pcm_alignment_zero_bits up to the byte boundary (which depends on the header
    length), then 384 sample bytes."""
    fields = facts.slice_fields("idr", mb, 0, 0, 0)
    hv, hn = compose_slice_header(fields, facts.log2_max_frame_num)
    v, n = 26, 9  # ue(25)
    pad = -(hn + n) % 8
    samples = bytes(rng.randrange(16, 236) for _ in range(384))
    v = (v << pad) << (8 * 384) | int.from_bytes(samples, "big")
    return _nal_bytes(fields.nal_byte, (hv, hn), (v, n + pad + 8 * 384))


def test_pcm_macroblocks_keep_their_alignment_at_every_address():
    """The one-macroblock test picture is faithful even for I_PCM, whose alignment bits
    depend on the header length: at addresses whose first_mb_in_slice codes take 1, 3,
    5, 7 and 9 bits the check accepts the slice, and the whole stream with it decodes
    strictly with exactly those samples; where first_mb's code is not 1 mod 8 bits long
    and the frame_num width is not compensated, the same slice fails."""
    facts = stream_facts(TINY)
    rng = random.Random(0)
    grey = [nalmod.strip_start_code(u) for u in nalmod.split_annexb_units(
        encode_frames([np.full((64, 64, 3), 128, np.uint8)], TINY))[1]]
    check = SliceDecodeCheck(facts)
    for mb in (0, 1, 3, 7, 15):
        pcm = _pcm_slice(facts, mb, rng)
        fields, hn, value, total = parse_slice_fields(pcm, facts.sps, facts.pps)
        data = _data_bits(value, total, hn)
        assert check.check(fields, data) is None
        gate = NalVerifier(TINY, after_header=False)
        for nal in grey[:2]:
            gate.observe(nal)
        for k in range(mb):
            gate.observe(grey[2 + k])
        assert gate.check(pcm) is None
        stream = nalmod.join_annexb(grey[:2 + mb] + [pcm] + grey[3 + mb:])
        frame = decode_annexb(stream, TINY, strict=True)[0]
        assert frame.shape == (64, 64, 3)
        if mb in (1, 3, 7):  # ue(first_mb) 3, 5, 7 bits: the test header needs 2, 4, 6 more
            wrong = MiniDecoder(facts, facts.log2_max_frame_num, True)  # no compensation
            assert wrong.check(fields, data) is not None
    # the decoder reads the samples where they were written: MB 0's luma is the first
    # 256 of them (no deblocking across a PCM macroblock's edges at these QPs)
    stream = nalmod.join_annexb(grey[:2] + [_pcm_slice(facts, 0, random.Random(5))] + grey[3:])
    ctx = av.CodecContext.create("h264", "r")
    y = ctx.decode(av.Packet(stream))[0].to_ndarray(format="yuv420p")[:16, :16]
    r = random.Random(5)
    assert y.reshape(-1).tolist() == [r.randrange(16, 236) for _ in range(256)]


def test_replacements_fit_at_every_position(streams):
    """At every point of a clip with scene cuts (inside IDR, P and I pictures, after an
    SPS, after a PPS) the substitute passes the check, with x264's start code length."""
    data = streams["tiny"]["scene_cuts"]
    gate = NalVerifier(TINY, after_header=False)
    facts = gate.facts
    kinds = set()
    for nal in nalmod.split_annexb(data):
        exp = facts.expect(gate.plan)
        rep = gate.replacement()
        body = nalmod.strip_start_code(rep)
        assert gate.check(body) is None, (gate.plan, body.hex(), gate.check(body))
        assert len(rep) - len(body) == exp[0].sc_len
        kinds.add(exp[0].kind if exp[0].kind != "slice" else gate.plan.open_kind or "new")
        gate.observe(nal)
    assert {"pps", "idr", "i", "p", "new"} <= kinds
    assert gate.stats.fills == len(nalmod.split_annexb(data))


def test_plan_follows_x264_gop_rules():
    facts = stream_facts(TINY)  # keyint_min 4, keyint 250
    start = facts.expect(PlanState())
    assert [e.kind for e in start] == ["sps"] and start[0].sc_len == 4
    assert [e.kind for e in facts.expect(PlanState(ps=1))] == ["pps"]
    idr = facts.expect(PlanState(ps=2))
    assert idr[0].fields.is_idr and idr[0].fields.idr_pic_id == 0 and idr[0].sc_len == 3
    assert facts.expect(PlanState(ps=2, last_idr_pic_id=0))[0].fields.idr_pic_id == 1
    assert facts.expect(PlanState(ps=2, last_idr_pic_id=1))[0].fields.idr_pic_id == 0
    early = facts.expect(PlanState(need_idr=False, since_idr=1, frame_num=1))
    assert [(e.kind, e.fields.slice_type if e.fields else None) for e in early] == [
        ("slice", 5),
        ("slice", 7),
    ]
    assert all(e.sc_len == 4 and e.fields.frame_num == 2 for e in early)
    late = facts.expect(PlanState(need_idr=False, since_idr=3, frame_num=3))
    assert [e.kind for e in late] == ["slice", "sps"]
    assert [
        e.kind for e in facts.expect(PlanState(need_idr=False, since_idr=249, frame_num=9))
    ] == ["sps"]
    inside = facts.expect(
        PlanState(next_mb=5, need_idr=False, since_idr=2, frame_num=2, open_kind="p")
    )
    assert len(inside) == 1 and inside[0].sc_len == 3 and inside[0].fields.first_mb == 5
    assert inside[0].fields.num_ref_override == 1  # two references after two pictures


# ----------------------------------------------------------------------------- token masks
def _walk(tok, ids: list[int], gate: NalVerifier, constraint: NalConstraint) -> list[int]:
    """Advance ``constraint`` token by token as the sampler would, the gate judging
    each NAL unit when the next one opens; returns the positions of masked-out tokens."""
    splitter = UnitSplitter("h264")
    bad = []
    for k, t in enumerate(ids):
        if not bool(constraint.allowed_mask()[t]):
            bad.append(k)
        constraint.advance(t)
        for unit in splitter.push(k, tok.token_bytes[t] or b""):
            nal = nalmod.strip_start_code(unit.data)
            assert gate.fits(nal), gate.last_reason
            gate.observe(nal)
    return bad


@pytest.mark.parametrize("name,vocab", [("tiny", 384), ("tiny", MIN_VOCAB), ("paper", 512)])
def test_canonical_tokenizations_pass_the_masks(streams, name, vocab):
    """A tokenizer trained on the clips tokenizes them; every token is allowed, every
    NAL passes with zero retries. The byte-only vocabulary splits start codes over
    several tokens: allowed too."""
    profile = PROFILES[name]
    clips = streams[name]
    tok = ByteTokenizer.train(list(clips.values()), vocab, "h264")
    for clip, data in clips.items():
        gate = NalVerifier(profile, after_header=False)
        # header-level masks (the slice grammar's masks: test_slice_automaton.py)
        c = NalConstraint(tok, gate, slice_grammar=False)
        ids = tok.encode(data, bos=False, eos=False)
        assert _walk(tok, ids, gate, c) == [], clip
        assert gate.stats.failed == 0 and gate.stats.passed == len(nalmod.split_annexb(data)) - 1
        assert bool(c.allowed_mask()[tok.eos_id])  # the clip may end here


@pytest.mark.parametrize("name,vocab", [("tiny", 384), ("tiny", MIN_VOCAB), ("paper", 1024)])
def test_masks_alone_write_x264_headers(streams, name, vocab):
    """Sampling uniformly among allowed tokens (openers favoured so NALs stay short),
    with no model and no gate: every NAL has x264's start code, header and emulation
    prevention (only its slice data may be wrong), and no mask is ever empty."""
    profile = PROFILES[name]
    tok = ByteTokenizer.train(list(streams[name].values()), vocab, "h264")
    c = NalConstraint(tok, profile=profile, slice_grammar=False)  # header masks only
    tf = c.tokens
    rng = random.Random(vocab)
    data = bytearray()
    while len(data) < 6000:
        allowed = torch.nonzero(c.allowed_mask()).flatten().tolist()
        assert allowed
        openers = [a for a in allowed if tf.lead1[a] or tf.zeros[a]]
        t = rng.choice(openers if openers and rng.random() < 0.4 else allowed)
        if t == tok.eos_id:
            continue
        c.advance(t)
        data += tok.token_bytes[t]
    _, units = nalmod.split_annexb_units(bytes(data))
    gate = NalVerifier(profile, check_data=False, after_header=False)
    for unit in units[:-1]:  # the last one may be unfinished
        nal = nalmod.strip_start_code(unit)
        assert len(unit) - len(nal) == gate.facts.expect(gate.plan)[0].sc_len, unit.hex()
        assert gate.check(nal) is None, (unit.hex(), gate.check(nal))
        gate.observe(nal)
    assert len(units) > 50 and gate.frames >= (len(units) - 3) // (profile.mbs_per_frame + 2)


def test_constraint_resyncs_with_the_gate_after_rollback(streams):
    """A rejected NAL rolled back without restoring the constraint (no snapshot) and
    with a restored copy: either way the next draw may only open a NAL, for the same
    position as the gate expects."""
    data = streams["tiny"]["smooth"]
    tok = ByteTokenizer.train([data], 384, "h264")
    units = nalmod.split_annexb_units(data)[1]
    gate = NalVerifier(TINY, after_header=False)
    for u in units[:5]:  # SPS, PPS, 3 slices
        gate.observe(nalmod.strip_start_code(u))
    c = NalConstraint(tok, gate)
    c.allowed_mask()
    snapshot = c.copy()
    # a wrong slice: the canonical bytes of the NEXT macroblock's slice, then an opener
    wrong = tok.encode(units[6] + units[7][:4], bos=False, eos=False)
    for t in wrong:
        c.advance(t)
    assert c.nals == 2 and gate.observed == 5  # the gate has not taken anything
    assert not gate.fits(nalmod.strip_start_code(units[6]))
    for cons in (c, snapshot):  # stale object, restored copy
        m = cons.allowed_mask()
        assert cons.closed and cons.plan == gate.plan
        first = tok.encode(units[5], bos=False, eos=False)[0]
        assert bool(m[first])
        assert not any(bool(m[t]) for t in range(tok.vocab_size)
                       if (tok.token_bytes[t] or b"\x00")[0] != 0)  # only start codes


def test_mask_cost_stays_small(streams):
    """A cached mask is a dict lookup: a second walk over the same clip builds no mask
    (machines fresh first: one filled by earlier tests would be replaced halfway)."""
    slice_automaton.fresh_machines()
    data = streams["tiny"]["smooth"]
    tok = ByteTokenizer.train([data], 384, "h264")
    ids = tok.encode(data, bos=False, eos=False)
    for _ in range(2):
        gate = NalVerifier(TINY, check_data=False, after_header=False)
        _walk(tok, ids, gate, NalConstraint(tok, gate))
        if _ == 0:
            built = len(NalConstraint(tok, gate).tokens.cache)
    assert len(NalConstraint(tok, gate).tokens.cache) == built


# ----------------------------------------------------------------------------- generation
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, smooth_frames, random_model_dir):
    samples = [encode_frames(smooth_frames(TINY, seed=s), TINY) for s in range(4)]
    return random_model_dir(samples, 384, "h264", TINY, 1024, tmp_path_factory.mktemp("m") / "avc")


def _generate_verified(monkeypatch, model_dir, frames: int, slice_grammar: bool = True, **kw):
    """generate_video with a NalVerifier per row and its NalConstraint as the row's
    sampler constraint (through ``constraint_factory`` once generate_video has it; until
    then through Session.start/restart, which is where it passes constraints)."""
    from avclm import generate as gen
    from codeclm.generation.session import Session

    gates: list[NalVerifier] = []

    def gate_factory(profile):
        gates.append(NalVerifier(profile))
        return gates[-1]

    if "constraint_factory" in inspect.signature(gen.generate_video).parameters:
        kw["constraint_factory"] = lambda tok, gate: NalConstraint(tok, gate,
                                                                   slice_grammar=slice_grammar)
    else:
        class ConstrainedSession(Session):
            def __init__(self, *args, on_unit=None, **kwargs):
                def judge(row, unit):  # what generate.py should tell the gate
                    if unit.truncated:
                        gates[row].note_truncated()
                    return on_unit(row, unit)

                super().__init__(*args, on_unit=judge, **kwargs)

            def start(self, prompts, constraints=None):
                if constraints is None:
                    constraints = [NalConstraint(self.tok, g) for g in gates]
                return super().start(prompts, constraints)

            def restart(self, row, ids, constraint=None):
                super().restart(row, ids, constraint or NalConstraint(self.tok, gates[row]))

        monkeypatch.setattr(gen, "Session", ConstrainedSession)
    from codeclm.generation.sampling_config import SamplingConfig

    events = list(gen.generate_video(model_dir, frames, gate_factory=gate_factory,
                                     config=SamplingConfig(seed=3), **kw))
    return events, gates


def test_random_model_clips_decode_strictly_with_the_frame_count(
    monkeypatch, model_dir, one_thread
):
    """Two rows, a context small enough for continuations: every clip decodes under
    the strict decoder with the asked frame count; the counts add up. Header masks
    only: the verifier's data check is what keeps these clips decodable."""
    from avclm.generate import FrameEvent, NalEvent

    events, gates = _generate_verified(monkeypatch, model_dir, 3, slice_grammar=False, batch=2,
                                       context=260, max_nal_tokens=24, max_attempts=4)
    stats = events[-1].stats
    assert stats["frames"] == [3, 3] and stats["continuations"] >= 1
    for r, gate in enumerate(gates):
        nals = [e for e in events if isinstance(e, NalEvent) and e.row == r]
        stream = b"".join(e.data for e in nals)
        assert len(decode_annexb(stream, TINY, strict=True)) == 3
        frames = [e for e in events if isinstance(e, FrameEvent) and e.row == r]
        assert len(frames) == 3 and not any(f.damaged for f in frames)
        s = gate.stats
        by_source = {src: sum(e.source == src for e in nals) for src in ("model", "replacement")}
        assert s.passed == by_source["model"]
        assert s.substitutions + s.fills == by_source["replacement"]
        assert s.nals_checked == s.passed + s.failed
        assert s.failed + s.truncated == s.retries + s.substitutions
        assert s.reasons.get("header", 0) == 0  # the masks write x264's headers
        assert s.reasons.get("data", 0) > 0 and s.check_s > 0  # slices were decoded
        print(f"row {r}: {s.as_dict()}")


def test_random_model_with_slice_grammar_needs_no_retries(monkeypatch, model_dir, one_thread):
    """With the slice grammar's masks (the default) a random model's slices pass the
    data check as sampled: no failed check, no substitution, strict decode."""
    from avclm.generate import NalEvent

    events, gates = _generate_verified(monkeypatch, model_dir, 2)
    assert events[-1].stats["frames"] == [2]
    s = gates[0].stats
    nals = [e for e in events if isinstance(e, NalEvent)]
    assert len(decode_annexb(b"".join(e.data for e in nals), TINY, strict=True)) == 2
    assert s.failed == 0 and s.substitutions == 0 and s.passed >= TINY.mbs_per_frame, s


def test_cli_no_slice_grammar_keeps_the_verifier_but_not_the_slice_masks(model_dir, tmp_path,
                                                                       capsys, one_thread):
    """``--no-slice-grammar``: the header masks and the verifier stay (the clip decodes
    strictly; slices fail the data check and are sampled again); by default the slice
    masks make every checked slice pass (retries there are NALs cut off at 24 tokens)."""
    from avclm.cli import main

    passed = {}
    for flags in ((), ("--no-slice-grammar",)):
        out = tmp_path / f"v{len(flags)}.h264"
        assert main(["generate", "--frames", "2", "--model", str(model_dir), "-o", str(out),
                     "--seed", "1", "--max-nal-tokens", "24", *flags]) == 0
        err = capsys.readouterr().err
        m = re.search(r"verifier: (\d+) of (\d+) NALs passed", err)
        assert m, err
        passed[flags] = tuple(int(x) for x in m.groups())
        assert len(decode_annexb(out.read_bytes(), TINY, strict=True)) == 2
    ok, checked = passed[()]
    assert ok == checked
    ok, checked = passed[("--no-slice-grammar",)]
    assert ok < checked
