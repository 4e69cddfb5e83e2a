"""Random slices drawn uniformly among the tokens the slice masks allow: a fuzzer for
:mod:`avclm.slice_automaton`, used by the tests and ``bench/bench_h264_walks.py``.

:func:`walk_slices` goes through a canonical stream NAL by NAL with a
:class:`~avclm.verifier.NalVerifier`; every slice of the chosen kind (``"I"`` or ``"P"``)
is replaced by a walk: tokens drawn uniformly among those the row's
:class:`~avclm.nal_masks.NalConstraint` allows (start code, x264's header, then the
macroblock-layer masks), ended at the first token after which the NAL may end. Each
walked slice is checked by the verifier on its own (x264's header, emulation prevention,
the strict one-macroblock decode) before the gate observes it; the other NAL units are
the canonical ones. The finished stream is decoded strictly as a whole. Passes over the
stream repeat until ``count`` slices have been walked (a pass for I slices stops after
the first picture: only IDR pictures hold them in canonical streams).
"""

from __future__ import annotations

import dataclasses
import random

from codeclm.errors import DecodeError

from . import nal as nalmod
from .bits import SLICE_I, parse_slice_fields
from .nal_masks import NalConstraint
from .profile import AvcProfile
from .stream import decode_annexb
from .stream_plan import stream_facts
from .verifier import NalVerifier

#: tokens one walked NAL may take before the walk gives up (never reached in practice:
#: every slice state has a finite completion)
MAX_WALK_TOKENS = 4000


@dataclasses.dataclass
class WalkReport:
    """What :func:`walk_slices` found: ``slices`` walked, ``failed`` of them rejected by
    the verifier (``reasons``: the first few), ``tokens`` drawn for them, ``streams``
    decoded whole and ``bad_streams`` of those that did not decode strictly with every
    picture."""

    slices: int = 0
    failed: int = 0
    tokens: int = 0
    streams: int = 0
    bad_streams: int = 0
    reasons: list[str] = dataclasses.field(default_factory=list)


def walk_nal(tokenizer, gate: NalVerifier, rng: random.Random) -> tuple[bytes, int]:
    """One slice NAL unit (no start code) drawn token by token, uniformly among the
    allowed tokens that open a slice and then continue it, from the gate's stream state;
    ended as soon as it may end. Returns (NAL, tokens drawn)."""
    c = NalConstraint(tokenizer, gate)
    eos = tokenizer.eos_id
    data = bytearray()
    for n in range(1, MAX_WALK_TOKENS + 1):
        allowed = [t for t in c.allowed_mask().nonzero().flatten().tolist() if t != eos]
        if c.cur is None or any(e.kind != "slice" for e in c.cur):
            # no SPS/PPS (allowed before a new IDR picture): only bytes that keep a slice
            allowed = [t for t in allowed if _opens_a_slice_or_nothing(c, t)]
        t = rng.choice(allowed)
        c.advance(t)
        data += tokenizer.token_bytes[t]
        if c.cur is not None and not c.closed and c.can_end:
            units = nalmod.split_annexb(bytes(data))
            return nalmod.strip_start_code(units[0]), n
    raise RuntimeError(f"no NAL end after {MAX_WALK_TOKENS} tokens")


def _opens_a_slice_or_nothing(c: NalConstraint, token: int) -> bool:
    trial = c.copy()
    trial.advance(token)
    return trial.cur is None or any(e.kind == "slice" for e in trial.cur)


def walk_slices(tokenizer, profile: AvcProfile, stream: bytes, kind: str, count: int,
                rng: random.Random) -> WalkReport:
    """Walk ``count`` slices of ``kind`` ("I" or "P") in place of ``stream``'s (a canonical
    encode at ``profile``), check each alone and every finished stream whole."""
    facts = stream_facts(profile)
    want = SLICE_I if kind == "I" else None
    units = nalmod.split_annexb_units(stream)[1]
    report = WalkReport()
    while report.slices < count:
        gate = NalVerifier(profile, after_header=False)
        out, pictures = [], 0
        for unit in units:
            nal = nalmod.strip_start_code(unit)
            if nalmod.is_picture_nal(nal):
                f = parse_slice_fields(nal, facts.sps, facts.pps)[0]
                if kind == "I" and f.kind != SLICE_I and pictures:
                    break  # past the IDR picture
                pictures += f.first_mb == 0
                if report.slices < count and (f.kind == want if want is not None
                                              else f.kind != SLICE_I):
                    nal, n = walk_nal(tokenizer, gate, rng)
                    report.slices += 1
                    report.tokens += n
                    reason = gate.check(nal)
                    if reason is not None:
                        report.failed += 1
                        report.reasons = (report.reasons + [reason])[:5]
            gate.observe(nal)
            out.append(nalmod.START_CODE + nal)
        report.streams += 1
        try:
            ok = len(decode_annexb(b"".join(out), profile, strict=True)) == pictures
        except DecodeError:
            ok = False
        report.bad_streams += not ok
    return report
