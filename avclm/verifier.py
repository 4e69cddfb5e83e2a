"""NAL verification for generated H.264: valid by construction, checked NAL by NAL.

Two layers keep a sampled stream decodable under the strict decoder
(``avclm.stream.decode_annexb(strict=True)``, ``err_detect=explode``), byte for byte in
the form x264 writes with the canonical profile:

1. **Token masks** (:class:`~avclm.nal_masks.NalConstraint`, :mod:`avclm.nal_masks`):
   before each draw, only tokens that continue what x264 could write (emulation
   prevention, start codes, NAL and slice headers bit for bit, and with
   ``slice_grammar=True`` the macroblock layer of :mod:`avclm.slice_automaton`).

2. **A NAL check** (:class:`NalVerifier`, a :class:`~avclm.slice_gate.SliceGate` for
   ``avclm.generate.generate_video(gate_factory=...)``): each completed NAL unit must be
   exactly what the masks allow (header bits, canonical emulation prevention, SPS/PPS
   bytes) *and its slice data must decode*: the slice is decoded by libavcodec with
   ``err_detect=explode+aggressive`` as the only macroblock of a 16x16 picture
   (:mod:`avclm.slice_check`); any error, a concealed (corrupt) frame, a missing
   frame, or bits left after the macroblock fail it.

Both follow the stream plan of :mod:`avclm.stream_plan` (what x264 writes where).

**Rollback.** ``generate_video`` rolls a rejected NAL back in the KV cache and samples
it again; after ``max_attempts`` tries :meth:`NalVerifier.replacement` substitutes a
canonical NAL for that position (:meth:`SliceGate.replacement`'s P_Skip or flat-intra
slice with x264's idr_pic_id, a flat intra slice in a non-IDR I picture, or the
canonical PPS after a generated SPS), so the stream always decodes.
Counts and timings per clip: :attr:`NalVerifier.stats` (:class:`VerifyStats`).
The bit-level syntax (slice header parse/compose, PPS fields, the test SPS) is in
:mod:`avclm.bits`.
"""

from __future__ import annotations

import dataclasses
import time

from codeclm.errors import DecodeError

from . import nal as nalmod
from .bits import (
    BAD_EBSP,
    compose_slice_header,
    data_bits,
    nal_bytes,
    parse_slice_fields,
    rbsp_int,
)
from .profile import AvcProfile
from .slice_check import decode_check_for
from .slice_gate import SliceGate
from .stream_plan import PlanState, stream_facts


@dataclasses.dataclass
class VerifyStats:
    """Per clip (one gate per batch row). ``nals_checked`` NAL units went through the
    check: ``passed`` or ``failed`` (``reasons``: "header", "emulation", "data");
    ``truncated``: NALs the sampler cut off at ``max_nal_tokens`` (reported with
    :meth:`NalVerifier.note_truncated`, never checked). Each failed or truncated NAL was
    either sampled again (``retries``) or replaced by a canonical NAL
    (``substitutions``): ``failed + truncated == retries + substitutions``. ``fills``:
    canonical NALs put in without a failure (the rest of a picture when the context
    runs out; also truncated NALs a caller did not report). ``check_s``: seconds in
    the check, ``decode_s`` of it in the test decoder."""

    nals_checked: int = 0
    passed: int = 0
    failed: int = 0
    truncated: int = 0
    retries: int = 0
    substitutions: int = 0
    fills: int = 0
    check_s: float = 0.0
    decode_s: float = 0.0
    reasons: dict = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["check_us_per_nal"] = 1e6 * self.check_s / self.nals_checked if self.nals_checked else 0.0
        return d


class NalVerifier(SliceGate):
    """A :class:`SliceGate` that checks whole NAL units: header bits exactly as x264
    writes them at this point of the stream, canonical emulation prevention, SPS/PPS
    bytes where x264 writes parameter sets, and slice data that decodes (see
    :class:`SliceDecodeCheck`). Use as ``generate_video(gate_factory=NalVerifier)``.

    ``fits(nal)`` also records the reason of a failure in :attr:`last_reason` and
    counts into :attr:`stats`; ``check_data=False`` leaves the decode out (header
    level only, for ablations). ``after_header``: the stream's SPS and PPS have been
    written already (generation: the prompt starts with them, and ``generate_video``
    observes only its pictures), so an IDR picture comes first; False for checking a
    whole stream from its first byte.

    Counters a :class:`NalConstraint` reads: ``observed`` NAL units (prompt, accepted,
    replacements) and ``rollbacks``: verdicts after which the row's bytes end at the
    last observed NAL (a failed check, a truncated NAL, a replacement)."""

    def __init__(self, profile: AvcProfile, check_data: bool = True, after_header: bool = True):
        super().__init__(profile)
        self.facts = stream_facts(profile)
        self.plan = PlanState(ps=2) if after_header else PlanState()
        self.check_data = check_data
        self.stats = VerifyStats()
        self.last_reason: str | None = None
        self.observed = 0
        self.rollbacks = 0
        self._failed_last = False
        self._decoder = decode_check_for(profile) if check_data else None

    # ------------------------------------------------------------------ gate API
    def restart(self) -> None:
        """A new coded video sequence follows: an IDR picture from a fresh encoder
        (its SPS/PPS implied), as after a continuation."""
        super().restart()
        self.plan = PlanState(ps=2)

    def observe(self, nal: bytes) -> bool:
        self.observed += 1
        self.plan = self.facts.observe(self.plan, nal)
        t = nalmod.nal_type(nal)
        if t in (nalmod.NAL_SPS, nalmod.NAL_PPS) and not self.in_picture:
            self.need_idr = True
        return super().observe(nal)

    def fits(self, nal: bytes) -> bool:
        t0 = time.perf_counter()
        reason = self.check(nal)
        self.stats.check_s += time.perf_counter() - t0
        self.stats.nals_checked += 1
        self.last_reason = reason
        if reason is None:
            self.stats.passed += 1
            self._failed_last = False
            return True
        self.stats.failed += 1
        self.stats.retries += 1  # becomes a substitution if replacement() follows
        self.rollbacks += 1
        key = reason.split(":")[0]
        self.stats.reasons[key] = self.stats.reasons.get(key, 0) + 1
        self._failed_last = True
        return False

    def note_truncated(self) -> None:
        """Count a NAL unit the sampler gave up on before it ended (``max_unit_tokens``):
        a failure that is never checked."""
        self.stats.truncated += 1
        self.stats.retries += 1  # becomes a substitution if replacement() follows
        self.last_reason = "truncated"
        self.rollbacks += 1
        self._failed_last = True

    def check(self, nal: bytes) -> str | None:
        """None if ``nal`` (no start code) may come next, else why not ("kind: detail")."""
        if not nal:
            return "header: empty NAL unit"
        alts = self.facts.expect(self.plan)
        for e in alts:
            if e.kind != "slice" and nal == e.nal:
                return None
        slices = [e for e in alts if e.kind == "slice" and e.fields.nal_byte == nal[0]]
        if not slices:
            kinds = ", ".join(e.kind for e in alts)
            return f"header: NAL header {nal[0]:#04x} where x264 writes {kinds}"
        if BAD_EBSP.search(nal, 1):
            return "emulation: start-code emulation or a needless escape in the payload"
        value, total = rbsp_int(nal)
        for e in slices:
            hv, hn = e.header
            if total > hn and value >> (total - hn) == hv:
                break
        else:
            return f"header: slice header is not x264's for macroblock {self.plan.next_mb}"
        try:
            data = data_bits(value, total, hn)
        except DecodeError as err:
            return f"data: {err}"
        if data[1] < 1:
            return "data: no slice data"
        if self._decoder is None:
            return None
        t0 = time.perf_counter()
        reason = self._decoder.check(e.fields, data)
        self.stats.decode_s += time.perf_counter() - t0
        return None if reason is None else f"data: {reason}"

    def replacement(self) -> bytes:
        """A canonical NAL unit (with start code) for the next position: the PPS after
        a generated SPS, else :meth:`SliceGate.replacement`'s slice with x264's
        idr_pic_id, or a flat intra slice in a non-IDR I picture."""
        if self._failed_last:
            self.stats.retries -= 1
            self.stats.substitutions += 1
        else:
            self.stats.fills += 1
        self._failed_last = False
        self.rollbacks += 1
        e = self.facts.expect(self.plan)[0]
        if e.kind != "slice":
            return nalmod.LONG_START_CODE + e.nal
        f = e.fields
        if self.plan.open_kind == "i":
            sc = nalmod.START_CODE if e.sc_len == 3 else nalmod.LONG_START_CODE
            return sc + nal_bytes(f.nal_byte, e.header, self.facts.intra_data)
        unit = super().replacement()
        if f.is_idr:
            m = nalmod.START_CODE_RE.match(unit)
            nal = nalmod.strip_start_code(unit)
            fields, hn, value, total = parse_slice_fields(nal, self.sps, self.facts.pps)
            if fields.idr_pic_id != f.idr_pic_id:
                fields = dataclasses.replace(fields, idr_pic_id=f.idr_pic_id)
                nal = nal_bytes(nal[0], compose_slice_header(fields, self.facts.log2_max_frame_num),
                                 data_bits(value, total, hn))
                unit = unit[:m.end()] + nal
        return unit
