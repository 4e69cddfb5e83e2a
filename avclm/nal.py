"""H.264 Annex-B NAL units: split/join, headers, emulation prevention, slice headers.

Vocabulary (ITU-T H.264 section 7 and Annex B):

- An **Annex-B stream** is NAL units each preceded by a start code, ``00 00 01``
  (3 bytes) or ``00 00 00 01`` (4 bytes; x264 uses it for the first NAL of each
  access unit).
- A **NAL unit** (``nal`` below, always *without* its start code) is a 1-byte header
  (forbidden_zero_bit, nal_ref_idc: 2 bits, nal_unit_type: 5 bits) and a payload in
  EBSP form: the RBSP with an emulation-prevention byte ``03`` inserted after every
  ``00 00`` that is followed by a byte <= 3, so ``00 00 0x`` never occurs inside.
- A **picture** (access unit) is the slice NAL units of one frame plus the non-picture
  NALs (SPS, PPS, SEI, AUD) that precede them. With the canonical profile every
  macroblock is its own slice, so a picture is ``mbs_per_frame`` slice NALs and starts
  at ``first_mb_in_slice == 0``.

Every parse error raises :class:`codeclm.errors.DecodeError`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from codeclm.errors import DecodeError

START_CODE = b"\x00\x00\x01"
LONG_START_CODE = b"\x00\x00\x00\x01"
#: a start code of either length (regex over bytes; the 4-byte form wins when present)
START_CODE_RE = re.compile(rb"\x00?\x00\x00\x01")

# nal_unit_type values (Table 7-1)
NAL_SLICE = 1
NAL_SLICE_DPA = 2
NAL_SLICE_DPB = 3
NAL_SLICE_DPC = 4
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
NAL_END_SEQ = 10
NAL_END_STREAM = 11
NAL_FILLER = 12
PICTURE_NAL_TYPES = frozenset({NAL_SLICE, NAL_SLICE_DPA, NAL_SLICE_DPB, NAL_SLICE_DPC, NAL_IDR})
PARAMETER_SET_TYPES = frozenset({NAL_SPS, NAL_PPS})

# slice_type % 5 (Table 7-6)
SLICE_P, SLICE_B, SLICE_I, SLICE_SP, SLICE_SI = range(5)
SLICE_TYPE_NAMES = {SLICE_P: "P", SLICE_B: "B", SLICE_I: "I", SLICE_SP: "SP", SLICE_SI: "SI"}

_EPB_RE = re.compile(rb"\x00\x00\x03")
_NEEDS_EPB_RE = re.compile(rb"\x00\x00(?=[\x00-\x03]|\Z)")
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


# --------------------------------------------------------------------------- Annex-B

def iter_annexb(data: bytes) -> Iterator[tuple[int, int, int]]:
    """Yield ``(unit_start, nal_start, nal_end)`` byte offsets for each NAL unit in ``data``.

    ``data[unit_start:nal_start]`` is the start code (3 or 4 bytes),
    ``data[nal_start:nal_end]`` the NAL unit. Zero bytes between a NAL unit and the next
    start code (``trailing_zero_8bits``) are excluded from the NAL. Bytes before the
    first start code are not reported (see :func:`leading_garbage`).
    """
    matches = [(m.start(), m.end()) for m in START_CODE_RE.finditer(data)]
    for i, (start, nal_start) in enumerate(matches):
        end = matches[i + 1][0] if i + 1 < len(matches) else len(data)
        nal_end = end
        while nal_end > nal_start and data[nal_end - 1] == 0:
            nal_end -= 1
        yield start, nal_start, nal_end


def leading_garbage(data: bytes) -> bytes:
    """The bytes before the first start code (all of ``data`` if there is none)."""
    m = START_CODE_RE.search(data)
    return data if m is None else data[: m.start()]


def split_annexb(data: bytes) -> list[bytes]:
    """Annex-B bytes -> NAL units without start codes (empty NALs are dropped)."""
    return [data[a:b] for _, a, b in iter_annexb(data) if b > a]


def split_annexb_units(data: bytes) -> tuple[bytes, list[bytes]]:
    """Annex-B bytes -> ``(leading, units)``, each unit a NAL *with* its own start code
    (and any trailing zero bytes), so that ``leading + b"".join(units) == data`` exactly."""
    spans = [s for s, _, _ in iter_annexb(data)]
    if not spans:
        return data, []
    bounds = spans + [len(data)]
    return data[: spans[0]], [data[a:b] for a, b in itertools.pairwise(bounds)]


def join_annexb(nals: Iterable[bytes], long_start_codes: bool = False) -> bytes:
    """NAL units (without start codes) -> Annex-B bytes.

    By default each NAL gets a 3-byte start code except SPS, PPS, SEI and AUD, which get
    4 bytes (as x264 writes a stream head); ``long_start_codes=True`` uses 4 everywhere.
    Note x264 also uses a 4-byte code for the first slice of every non-first picture, so
    use :func:`split_annexb_units` when exact bytes must be kept.
    """
    out = bytearray()
    for nal in nals:
        if not nal:
            raise DecodeError("cannot write an empty NAL unit")
        long = long_start_codes or nal_type(nal) in (NAL_SPS, NAL_PPS, NAL_AUD)
        out += LONG_START_CODE if long else START_CODE
        out += nal
    return bytes(out)


def strip_start_code(unit: bytes) -> bytes:
    """A NAL with or without a leading start code -> the NAL alone (trailing zeros removed)."""
    m = START_CODE_RE.match(unit)
    nal = unit[m.end():] if m else unit
    return nal.rstrip(b"\x00")


# --------------------------------------------------------------------------- NAL header

def nal_type(nal: bytes) -> int:
    """nal_unit_type (0..31) of a NAL unit without start code."""
    if not nal:
        raise DecodeError("empty NAL unit")
    return nal[0] & 0x1F


def nal_ref_idc(nal: bytes) -> int:
    """nal_ref_idc (0..3): 0 means no other picture references this one."""
    if not nal:
        raise DecodeError("empty NAL unit")
    return (nal[0] >> 5) & 0x03


def forbidden_bit(nal: bytes) -> int:
    """forbidden_zero_bit; 1 means the NAL is damaged."""
    if not nal:
        raise DecodeError("empty NAL unit")
    return nal[0] >> 7


def is_picture_nal(nal: bytes) -> bool:
    """True for VCL NAL units (coded slices, types 1-5): the ones that carry picture data."""
    return bool(nal) and (nal[0] & 0x1F) in PICTURE_NAL_TYPES


# --------------------------------------------------------------------------- EBSP <-> RBSP

def ebsp_to_rbsp(ebsp: bytes) -> bytes:
    """Remove emulation-prevention bytes: every ``00 00 03`` becomes ``00 00``."""
    return _EPB_RE.sub(b"\x00\x00", ebsp)


def rbsp_to_ebsp(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes: ``00 00`` followed by a byte <= 3 (or by the
    end of the payload) gets a ``03`` after it. Inverse of :func:`ebsp_to_rbsp`."""
    return _NEEDS_EPB_RE.sub(b"\x00\x00\x03", rbsp)


# --------------------------------------------------------------------------- bit reader

class BitReader:
    """MSB-first bit reader over RBSP bytes with Exp-Golomb codes (section 9.1)."""

    __slots__ = ("_nbits", "_value", "pos")

    def __init__(self, rbsp: bytes):
        self._value = int.from_bytes(rbsp, "big")
        self._nbits = 8 * len(rbsp)
        self.pos = 0

    @property
    def bits_left(self) -> int:
        return self._nbits - self.pos

    def u(self, n: int) -> int:
        """Read an n-bit unsigned integer."""
        if n == 0:
            return 0
        if self.pos + n > self._nbits:
            raise DecodeError(f"bitstream ends early: need {n} bits at bit {self.pos} of {self._nbits}")
        self.pos += n
        return (self._value >> (self._nbits - self.pos)) & ((1 << n) - 1)

    def flag(self) -> bool:
        return bool(self.u(1))

    def ue(self) -> int:
        """Unsigned Exp-Golomb ue(v)."""
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise DecodeError(f"invalid Exp-Golomb code at bit {self.pos}")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """Signed Exp-Golomb se(v): 0, 1, -1, 2, -2, ..."""
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _reader(nal: bytes, max_bytes: int | None = None) -> BitReader:
    payload = nal[1:] if max_bytes is None else nal[1: 1 + max_bytes]
    return BitReader(ebsp_to_rbsp(payload))


# --------------------------------------------------------------------------- SPS / PPS

@dataclass(frozen=True)
class Sps:
    """The sequence parameter set fields the toolkit needs. Sizes in pixels."""

    sps_id: int
    profile_idc: int
    constraint_flags: int
    level_idc: int
    chroma_format_idc: int
    log2_max_frame_num: int
    pic_order_cnt_type: int
    log2_max_poc_lsb: int  # 0 unless pic_order_cnt_type == 0
    max_num_ref_frames: int
    width_mbs: int
    height_map_units: int
    frame_mbs_only: bool
    crop: tuple[int, int, int, int]  # left, right, top, bottom in crop units
    vui_present: bool
    separate_colour_plane: bool = False

    @property
    def height_mbs(self) -> int:
        return self.height_map_units * (1 if self.frame_mbs_only else 2)

    @property
    def mbs_per_frame(self) -> int:
        return self.width_mbs * self.height_mbs

    def _crop_units(self) -> tuple[int, int]:
        """(CropUnitX, CropUnitY) of equations 7-19..7-22."""
        field = 1 if self.frame_mbs_only else 2
        if self.chroma_format_idc == 0 or self.separate_colour_plane:
            return 1, field
        sub_w = 1 if self.chroma_format_idc == 3 else 2
        sub_h = 2 if self.chroma_format_idc == 1 else 1
        return sub_w, sub_h * field

    @property
    def width(self) -> int:
        """Cropped picture width in pixels."""
        return 16 * self.width_mbs - self._crop_units()[0] * (self.crop[0] + self.crop[1])

    @property
    def height(self) -> int:
        """Cropped picture height in pixels."""
        return 16 * self.height_mbs - self._crop_units()[1] * (self.crop[2] + self.crop[3])


@dataclass(frozen=True)
class Pps:
    pps_id: int
    sps_id: int
    entropy_coding_mode: bool  # False = CAVLC (baseline)
    num_slice_groups: int


def _skip_scaling_list(r: BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + r.se() + 256) % 256
        last = nxt if nxt != 0 else last


def parse_sps(nal: bytes) -> Sps:
    """Parse an SPS NAL unit (type 7, without start code)."""
    if nal_type(nal) != NAL_SPS:
        raise DecodeError(f"not an SPS (nal_unit_type {nal_type(nal)})")
    r = _reader(nal)
    profile_idc, constraint, level_idc = r.u(8), r.u(8), r.u(8)
    sps_id = r.ue()
    if sps_id > 31:
        raise DecodeError(f"SPS id {sps_id} out of range")
    chroma, separate = 1, False
    if profile_idc in _HIGH_PROFILES:
        chroma = r.ue()
        if chroma > 3:
            raise DecodeError(f"chroma_format_idc {chroma} out of range")
        if chroma == 3:
            separate = r.flag()
        r.ue(), r.ue()  # bit depths
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma != 3 else 12):
                if r.flag():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    log2_max_frame_num = r.ue() + 4
    if log2_max_frame_num > 16:
        raise DecodeError(f"log2_max_frame_num {log2_max_frame_num} out of range")
    poc_type = r.ue()
    log2_poc = 0
    if poc_type == 0:
        log2_poc = r.ue() + 4
    elif poc_type == 1:
        r.u(1)
        r.se(), r.se()
        n = r.ue()
        if n > 255:
            raise DecodeError("num_ref_frames_in_pic_order_cnt_cycle out of range")
        for _ in range(n):
            r.se()
    elif poc_type != 2:
        raise DecodeError(f"pic_order_cnt_type {poc_type} out of range")
    max_refs = r.ue()
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.flag()
    if not frame_mbs_only:
        r.u(1)
    r.u(1)  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if r.flag():
        crop = (r.ue(), r.ue(), r.ue(), r.ue())
    vui = r.flag()
    return Sps(sps_id, profile_idc, constraint, level_idc, chroma, log2_max_frame_num, poc_type,
               log2_poc, max_refs, width_mbs, height_map_units, frame_mbs_only, crop, vui, separate)


def parse_pps(nal: bytes) -> Pps:
    """Parse the head of a PPS NAL unit (type 8, without start code)."""
    if nal_type(nal) != NAL_PPS:
        raise DecodeError(f"not a PPS (nal_unit_type {nal_type(nal)})")
    r = _reader(nal)
    pps_id, sps_id = r.ue(), r.ue()
    if pps_id > 255 or sps_id > 31:
        raise DecodeError(f"PPS id {pps_id} / SPS id {sps_id} out of range")
    entropy = r.flag()
    r.u(1)  # bottom_field_pic_order_in_frame_present_flag
    return Pps(pps_id, sps_id, entropy, r.ue() + 1)


# --------------------------------------------------------------------------- slice header

@dataclass(frozen=True)
class SliceHeader:
    """The head of a slice header (section 7.3.3). ``frame_num`` and ``idr_pic_id`` are
    None when no SPS was given to the parser."""

    nal_type: int
    nal_ref_idc: int
    first_mb: int
    slice_type: int  # 0..9; ``slice_type % 5`` is P, B, I, SP, SI
    pps_id: int
    frame_num: int | None = None
    idr_pic_id: int | None = None

    @property
    def is_idr(self) -> bool:
        return self.nal_type == NAL_IDR

    @property
    def kind(self) -> str:
        """"I", "P", "B", "SP" or "SI"."""
        return SLICE_TYPE_NAMES[self.slice_type % 5]


def parse_slice_header(nal: bytes, sps: Sps | None = None) -> SliceHeader:
    """Read first_mb_in_slice, slice_type, pic_parameter_set_id and, given the SPS,
    frame_num (``log2_max_frame_num`` bits) and idr_pic_id from a slice NAL unit."""
    t = nal_type(nal)
    if t not in PICTURE_NAL_TYPES:
        raise DecodeError(f"not a slice NAL unit (nal_unit_type {t})")
    if forbidden_bit(nal):
        raise DecodeError("forbidden_zero_bit is set")
    r = _reader(nal, 32)
    first_mb, slice_type, pps_id = r.ue(), r.ue(), r.ue()
    if slice_type > 9:
        raise DecodeError(f"slice_type {slice_type} out of range")
    if pps_id > 255:
        raise DecodeError(f"pic_parameter_set_id {pps_id} out of range")
    frame_num = idr_pic_id = None
    if sps is not None:
        if sps.separate_colour_plane:
            r.u(2)
        frame_num = r.u(sps.log2_max_frame_num)
        if not sps.frame_mbs_only and r.flag():  # field_pic_flag
            r.u(1)
        if t == NAL_IDR:
            idr_pic_id = r.ue()
    return SliceHeader(t, nal_ref_idc(nal), first_mb, slice_type, pps_id, frame_num, idr_pic_id)


def first_mb_in_slice(nal: bytes) -> int:
    """Address of the first macroblock of a slice NAL unit (raster order)."""
    return parse_slice_header(nal).first_mb


def slice_type(nal: bytes) -> int:
    """slice_type (0..9) of a slice NAL unit; ``% 5`` gives P=0, B=1, I=2, SP=3, SI=4."""
    return parse_slice_header(nal).slice_type


# --------------------------------------------------------------------------- pictures

def group_pictures(nals: Iterable[bytes]) -> list[list[bytes]]:
    """Group NAL units (without start codes) into access units, one per picture.

    A new access unit starts at a slice with ``first_mb_in_slice == 0``, and also at a
    slice whose first macroblock does not come after the previous slice's (a picture
    that lost its head). Non-picture NALs (SPS, PPS, SEI, AUD) seen after a picture's
    slices belong to the *next* access unit; end-of-sequence/stream and filler stay
    with the current one. Non-picture NALs after the last slice form a last group.
    Raises DecodeError on a slice whose header cannot be read.
    """
    groups: list[list[bytes]] = []
    current: list[bytes] | None = None
    last_mb = -1
    pending: list[bytes] = []
    for nal in nals:
        t = nal_type(nal)
        if t in PICTURE_NAL_TYPES:
            mb = first_mb_in_slice(nal)
            if current is None or mb == 0 or mb <= last_mb:
                current = pending + [nal]
                groups.append(current)
            else:
                current.extend(pending)
                current.append(nal)
            pending = []
            last_mb = mb
        elif t in (NAL_END_SEQ, NAL_END_STREAM, NAL_FILLER) and current is not None and not pending:
            current.append(nal)
        else:
            pending.append(nal)
    if pending:
        groups.append(pending)
    return groups
