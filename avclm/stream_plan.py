"""What x264 writes where in a canonical stream: a profile's facts and the stream plan.

:class:`StreamFacts` (one per profile, :func:`stream_facts`: learned from two small x264
encodes) holds the canonical SPS and PPS, the slice header fields x264 writes for IDR, I
and P pictures, and the slice data of the canonical flat-intra and P_Skip macroblocks.
:class:`PlanState` is where a stream stands between two NAL units;
:meth:`StreamFacts.observe` moves it past one NAL, and :meth:`StreamFacts.expect` lists
the NAL units x264 may write next (:class:`Expect`: kind, start code length, exact bytes
or header bits, and a byte pattern every acceptable NAL matches). The NAL check
(:mod:`avclm.verifier`) and the token masks (:mod:`avclm.nal_masks`) both follow it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

from . import nal as nalmod
from .bits import (
    SliceFields,
    compose_slice_header,
    data_bits,
    parse_pps_fields,
    parse_slice_fields,
    require_canonical_pps,
    require_canonical_sps,
)
from .profile import AvcProfile
from .slice_gate import template_pictures

#: bytes of a NAL's head kept to read its slice header (first_mb .. idr_pic_id)
HEAD_BYTES = 16


class PlanState(NamedTuple):
    """Where a canonical stream stands between two NAL units (what x264 may write next).

    ``next_mb``: macroblock of the next slice (0: a picture boundary); ``ps``: 0, or 1
    after an SPS (a PPS follows), 2 after a PPS (an IDR picture follows);
    ``need_idr``: no IDR since the stream (re)started; ``since_idr``: pictures since the
    last IDR (the open one included); ``frame_num`` of the last or open picture;
    ``open_kind``: "idr", "i" or "p" while a picture is open, else None;
    ``idr_pic_id``: of the open IDR picture, ``last_idr_pic_id`` of the last one."""

    next_mb: int = 0
    ps: int = 0
    need_idr: bool = True
    since_idr: int = 0
    frame_num: int = -1
    open_kind: str | None = None
    idr_pic_id: int | None = None
    last_idr_pic_id: int | None = None


@dataclasses.dataclass(frozen=True)
class Expect:
    """One NAL unit x264 may write next.

    ``kind``: "sps", "pps" or "slice"; ``sc_len``: its start code length (3 or 4);
    ``nal``: the exact bytes of an SPS/PPS; ``fields``/``header``: a slice's header
    fields and its header RBSP bits (int, count). ``mask``/``value``: byte pattern
    over the NAL's first ``len(mask)`` bytes (header byte included) that every
    acceptable NAL matches; ``exact``: the NAL is exactly that long; ``min_len``: the
    NAL's shortest possible length in bytes."""

    kind: str
    sc_len: int
    nal: bytes | None
    fields: SliceFields | None
    header: tuple[int, int] | None
    mask: bytes
    value: bytes
    exact: bool
    min_len: int


def _pattern(nal_byte: int, header: tuple[int, int]) -> tuple[bytes, bytes]:
    """Byte pattern (mask, value) of a NAL whose RBSP starts with ``header`` bits. It
    stops before a position an emulation-prevention byte could shift (two zero bytes)."""
    hv, hn = header
    full, part = divmod(hn, 8)
    rb = (hv >> part).to_bytes(full, "big") if full else b""
    mask, value = [0xFF], [nal_byte]
    for i, b in enumerate(rb):
        mask.append(0xFF)
        value.append(b)
        if b == 0 and i and rb[i - 1] == 0:
            return bytes(mask), bytes(value)
    if part:
        mask.append(((1 << part) - 1) << (8 - part))
        value.append((hv & ((1 << part) - 1)) << (8 - part))
    return bytes(mask), bytes(value)


class StreamFacts:
    """What the canonical profile writes, learned once from x264 itself: SPS/PPS bytes,
    the slice header fields of IDR, I and P pictures (P: per reference count), the
    slice data of the canonical flat-intra and P_Skip macroblocks. Shared by all gates
    and constraints of a profile (:func:`stream_facts`)."""

    def __init__(self, profile: AvcProfile):
        from .codec import canonical_header

        self.profile = profile
        self.sps_nal, self.pps_nal = nalmod.split_annexb(canonical_header(profile))
        self.sps = nalmod.parse_sps(self.sps_nal)
        self.pps = parse_pps_fields(self.pps_nal)
        require_canonical_sps(self.sps)
        require_canonical_pps(self.pps)
        self.log2_max_frame_num = self.sps.log2_max_frame_num
        self.max_frame_num = 1 << self.log2_max_frame_num
        self.mbs = profile.mbs_per_frame
        self.max_refs = self.sps.max_num_ref_frames
        self.keyint, self.keyint_min = profile.keyint, profile.keyint_min
        _, pictures = template_pictures(profile)
        parsed = [[parse_slice_fields(nalmod.strip_start_code(u), self.sps, self.pps) for u in pic]
                  for pic in pictures]
        idr = parsed[0][0]
        self.idr_fields = idr[0]
        self.intra_data = data_bits(idr[2], idr[3], idr[1])  # the flat intra macroblock
        #: refs (1..) -> header fields of a P slice with that many references
        self.p_fields = {r: parsed[r][0][0] for r in range(1, len(parsed))}
        p = parsed[1][0]
        self.skip_data = data_bits(p[2], p[3], p[1])  # P_Skip: mb_skip_run = 1
        self.i_fields = dataclasses.replace(  # a non-IDR I picture (a scene cut < keyint_min)
            self.idr_fields, nal_byte=p[0].nal_byte, idr_pic_id=None, dec_ref=(0,))
        self._expect_cache: dict[PlanState, tuple[Expect, ...]] = {}

    # ------------------------------------------------------------------ the plan
    def observe(self, st: PlanState, nal: bytes) -> PlanState:
        """The state after NAL unit ``nal`` (no start code; a slice's first
        HEAD_BYTES bytes suffice). Lenient: follows whatever the NAL says, as
        :meth:`SliceGate.observe` does. Raises DecodeError for an unreadable slice header."""
        t = nal[0] & 0x1F
        if t == nalmod.NAL_SPS:
            return st._replace(ps=1, need_idr=True)
        if t == nalmod.NAL_PPS:
            return st._replace(ps=2, need_idr=True)
        if t not in nalmod.PICTURE_NAL_TYPES:
            return st
        h = nalmod.parse_slice_header(nal, self.sps)
        if st.open_kind is None:
            idr = h.is_idr
            kind = "idr" if idr else ("i" if h.slice_type % 5 == nalmod.SLICE_I else "p")
            st = st._replace(
                ps=0, open_kind=kind, frame_num=h.frame_num, idr_pic_id=h.idr_pic_id,
                since_idr=0 if idr else st.since_idr + 1, need_idr=False if idr else st.need_idr,
                last_idr_pic_id=h.idr_pic_id if idr else st.last_idr_pic_id)
        nxt = h.first_mb + 1
        if nxt >= self.mbs:
            return st._replace(next_mb=0, open_kind=None)
        return st._replace(next_mb=nxt)

    def expect(self, st: PlanState) -> tuple[Expect, ...]:
        """The NAL units x264 may write next, most common first (a P slice before the
        SPS of a scene-cut IDR)."""
        got = self._expect_cache.get(st)
        if got is None:
            if len(self._expect_cache) > 65536:
                self._expect_cache.clear()
            got = self._expect_cache[st] = self._expect(st)
        return got

    def _expect(self, st: PlanState) -> tuple[Expect, ...]:
        if st.open_kind is not None:  # the next slice of the open picture
            return (self._slice(st.open_kind, st.next_mb, st.frame_num, st.idr_pic_id,
                                st.since_idr, 3),)
        if st.ps == 1:
            return (self._param(self.pps_nal),)
        if st.ps == 2:
            idr_id = 0 if st.last_idr_pic_id is None else st.last_idr_pic_id ^ 1
            return (self._slice("idr", 0, 0, idr_id, 0, 3),)
        if st.need_idr:
            return (self._param(self.sps_nal),)
        dist = st.since_idr + 1  # the new picture's distance from the last IDR
        fn = (st.frame_num + 1) % self.max_frame_num
        if dist >= self.keyint:
            return (self._param(self.sps_nal),)
        alts = [self._slice("p", 0, fn, None, dist, 4)]
        if dist < self.keyint_min:
            alts.append(self._slice("i", 0, fn, None, dist, 4))
        else:
            alts.append(self._param(self.sps_nal))
        return tuple(alts)

    def _param(self, nal: bytes) -> Expect:
        return Expect(
            "sps" if nalmod.nal_type(nal) == nalmod.NAL_SPS else "pps",
            4,
            nal,
            None,
            None,
            b"\xff" * len(nal),
            nal,
            True,
            len(nal),
        )

    def slice_fields(self, kind: str, mb: int, frame_num: int, idr_pic_id: int | None,
                     since_idr: int) -> SliceFields:
        """Header fields x264 writes for macroblock ``mb`` of a picture of ``kind``."""
        if kind == "idr":
            base = dataclasses.replace(self.idr_fields, idr_pic_id=idr_pic_id)
        elif kind == "i":
            base = self.i_fields
        else:
            refs = max(1, min(since_idr, self.max_refs, max(self.p_fields)))
            base = self.p_fields[refs]
        return dataclasses.replace(base, first_mb=mb, frame_num=frame_num)

    def _slice(self, kind: str, mb: int, frame_num: int, idr_pic_id: int | None,
               since_idr: int, sc_len: int) -> Expect:
        f = self.slice_fields(kind, mb, frame_num, idr_pic_id, since_idr)
        header = compose_slice_header(f, self.log2_max_frame_num)
        mask, value = _pattern(f.nal_byte, header)
        # header byte, header bits, at least one data bit and the stop bit
        min_len = 1 + -(-(header[1] + 2) // 8)
        return Expect("slice", sc_len, None, f, header, mask, value, False, min_len)


@functools.cache
def stream_facts(profile: AvcProfile) -> StreamFacts:
    """The :class:`StreamFacts` of ``profile`` (made once: two small x264 encodes)."""
    return StreamFacts(profile)
