"""H.264 bit syntax in one place: bits, Exp-Golomb codes, RBSP <-> EBSP, SPS/PPS, slice headers.

Everything below works on the bits of one NAL unit (ITU-T H.264 section 7 and 9.1):

- :class:`BitReader` / :class:`BitWriter`: MSB-first ``u(n)``, ``ue(v)``, ``se(v)``,
  ``te(v)``; :func:`ue_len` is the length of a ue(v) code in bits.
- :func:`ebsp_to_rbsp` / :func:`rbsp_to_ebsp`: emulation prevention (``00 00 03``);
  :data:`BAD_EBSP` matches what canonical EBSP never holds.
- RBSP as one integer: :func:`rbsp_int` (a NAL -> (int, bit count)), :func:`data_bits`
  (the bits between a header and the rbsp_stop_one_bit), :func:`payload_bits` (all
  bits before the stop bit), :func:`nal_bytes` (header byte + header bits + data bits
  -> a NAL in EBSP form).
- Parameter sets: :func:`parse_sps` (:class:`Sps`), :func:`parse_pps` (the head of a PPS,
  :class:`Pps`) and :func:`parse_pps_fields` (every field the canonical profile checks,
  :class:`PpsFields`).
- Slice headers: :func:`parse_slice_header` reads the head of any slice
  (:class:`SliceHeader`); for baseline CAVLC streams as the canonical profile writes
  them (pic_order_cnt_type 2, one slice group, no weighted prediction)
  :func:`parse_slice_fields` reads every field (:class:`SliceFields`) and
  :func:`compose_slice_header` writes it back bit for bit; :func:`rewrite_slice` and
  :func:`rewrite_sps` rewrite fields of existing NALs.

Bit counts are in bits, byte counts in bytes. Parse errors raise
:class:`codeclm.errors.DecodeError`; settings outside the canonical profile raise
:class:`codeclm.errors.ProfileError`.
"""

from __future__ import annotations

import dataclasses
import re

from codeclm.errors import DecodeError, EncodeError, ProfileError

# nal_unit_type values of slices (Table 7-1); the full list is in avclm.nal
NAL_SLICE = 1
NAL_SLICE_DPA = 2
NAL_SLICE_DPB = 3
NAL_SLICE_DPC = 4
NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
PICTURE_NAL_TYPES = frozenset({NAL_SLICE, NAL_SLICE_DPA, NAL_SLICE_DPB, NAL_SLICE_DPC, NAL_IDR})

# slice_type % 5 (Table 7-6)
SLICE_P, SLICE_B, SLICE_I, SLICE_SP, SLICE_SI = range(5)
SLICE_TYPE_NAMES = {SLICE_P: "P", SLICE_B: "B", SLICE_I: "I", SLICE_SP: "SP", SLICE_SI: "SI"}


# =============================================================================== bits
class BitReader:
    """MSB-first bit reader over RBSP bytes with Exp-Golomb codes (section 9.1).
    ``pos`` is the number of bits read."""

    __slots__ = ("_nbits", "_value", "pos")

    def __init__(self, rbsp: bytes):
        self._value = int.from_bytes(rbsp, "big")
        self._nbits = 8 * len(rbsp)
        self.pos = 0

    def u(self, n: int) -> int:
        """Read an n-bit unsigned integer."""
        if n == 0:
            return 0
        if self.pos + n > self._nbits:
            raise DecodeError(f"bitstream ends early: need {n} bits at bit {self.pos} of "
                              f"{self._nbits}")
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

    def te(self, range_max: int) -> int:
        """Truncated Exp-Golomb te(v) with the syntax element's range 0..range_max
        (section 9.1: one inverted bit when range_max is 1, else ue(v))."""
        return 1 - self.u(1) if range_max == 1 else self.ue()


class BitWriter:
    """MSB-first bit accumulator: ``value`` holds the ``n`` bits written."""

    __slots__ = ("n", "value")

    def __init__(self):
        self.value, self.n = 0, 0

    def u(self, n: int, v: int) -> BitWriter:
        if v < 0 or v >> n:
            raise EncodeError(f"{v} does not fit {n} bits")
        self.value, self.n = (self.value << n) | v, self.n + n
        return self

    def ue(self, v: int) -> BitWriter:
        x = v + 1
        return self.u(2 * x.bit_length() - 1, x)

    def se(self, v: int) -> BitWriter:
        return self.ue(2 * v - 1 if v > 0 else -2 * v)

    def te(self, range_max: int, v: int) -> BitWriter:
        return self.u(1, 1 - v) if range_max == 1 else self.ue(v)

    def bits(self) -> tuple[int, int]:
        """What was written: (int, bit count)."""
        return self.value, self.n


def ue_len(v: int) -> int:
    """Length in bits of the ue(v) code of ``v``."""
    return 2 * (v + 1).bit_length() - 1


# =============================================================================== EBSP <-> RBSP
_EPB_RE = re.compile(rb"\x00\x00\x03")
_NEEDS_EPB_RE = re.compile(rb"\x00\x00(?=[\x00-\x03]|\Z)")
#: what canonical EBSP never holds: a start-code prefix, ``00 00 02``, or an escape
#: not followed by a byte <= 3
BAD_EBSP = re.compile(rb"\x00\x00(?:[\x00-\x02]|\x03(?=[\x04-\xff]))")


def ebsp_to_rbsp(ebsp: bytes) -> bytes:
    """Remove emulation-prevention bytes: every ``00 00 03`` becomes ``00 00``."""
    return _EPB_RE.sub(b"\x00\x00", ebsp)


def rbsp_to_ebsp(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes: ``00 00`` followed by a byte <= 3 (or by the
    end of the payload) gets a ``03`` after it. Inverse of :func:`ebsp_to_rbsp`."""
    return _NEEDS_EPB_RE.sub(b"\x00\x00\x03", rbsp)


def rbsp_int(nal: bytes) -> tuple[int, int]:
    """A NAL (no start code) -> its RBSP (header byte excluded) as (int, bit count)."""
    rbsp = ebsp_to_rbsp(nal[1:])
    return int.from_bytes(rbsp, "big"), 8 * len(rbsp)


def data_bits(value: int, total: int, start: int) -> tuple[int, int]:
    """RBSP bits from bit ``start`` up to (not including) the rbsp_stop_one_bit:
    (int, bit count). Raises DecodeError without a stop bit after ``start``."""
    tail = value & ((1 << (total - start)) - 1) if total > start else 0
    if tail == 0:
        raise DecodeError("no rbsp_stop_one_bit after the header")
    zeros = (tail & -tail).bit_length() - 1
    return tail >> (zeros + 1), total - start - zeros - 1


def payload_bits(rbsp: bytes) -> tuple[int, int]:
    """RBSP bytes -> (payload as int, payload bit count), rbsp_stop_one_bit and the
    alignment zeros removed."""
    value, n = int.from_bytes(rbsp, "big"), 8 * len(rbsp)
    if value == 0:
        raise DecodeError("slice RBSP has no stop bit")
    return data_bits(value, n, 0)


def nal_bytes(nal_byte: int, header: tuple[int, int], data: tuple[int, int]) -> bytes:
    """NAL header byte + RBSP (header bits, data bits, stop bit, zero alignment) in
    EBSP form. ``header`` and ``data`` are (int, bit count)."""
    (hv, hn), (dv, dn) = header, data
    value, n = (((hv << dn) | dv) << 1) | 1, hn + dn + 1
    pad = -n % 8
    return bytes([nal_byte]) + rbsp_to_ebsp((value << pad).to_bytes((n + pad) // 8, "big"))


# =============================================================================== SPS / PPS

#: profile_idc values whose SPS carries chroma_format_idc, bit depths and scaling lists
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


@dataclasses.dataclass(frozen=True)
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


@dataclasses.dataclass(frozen=True)
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


def _parameter_set_reader(nal: bytes, wanted: int, what: str) -> BitReader:
    """A reader over the RBSP of a parameter-set NAL of type ``wanted`` (without start
    code); DecodeError for an empty NAL or another type."""
    if not nal:
        raise DecodeError("empty NAL unit")
    if nal[0] & 0x1F != wanted:
        raise DecodeError(f"not {what} (nal_unit_type {nal[0] & 0x1F})")
    return BitReader(ebsp_to_rbsp(nal[1:]))


def parse_sps(nal: bytes) -> Sps:
    """Parse an SPS NAL unit (type 7, without start code)."""
    r = _parameter_set_reader(nal, NAL_SPS, "an SPS")
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
    r = _parameter_set_reader(nal, NAL_PPS, "a PPS")
    pps_id, sps_id = r.ue(), r.ue()
    if pps_id > 255 or sps_id > 31:
        raise DecodeError(f"PPS id {pps_id} / SPS id {sps_id} out of range")
    entropy = r.flag()
    r.u(1)  # bottom_field_pic_order_in_frame_present_flag
    return Pps(pps_id, sps_id, entropy, r.ue() + 1)


# =============================================================================== slice header head

@dataclasses.dataclass(frozen=True)
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
    frame_num (``log2_max_frame_num`` bits) and idr_pic_id from a slice NAL unit (no
    start code). Works for any profile."""
    if not nal:
        raise DecodeError("empty NAL unit")
    t = nal[0] & 0x1F
    if t not in PICTURE_NAL_TYPES:
        raise DecodeError(f"not a slice NAL unit (nal_unit_type {t})")
    if nal[0] >> 7:
        raise DecodeError("forbidden_zero_bit is set")
    r = BitReader(ebsp_to_rbsp(nal[1:33]))
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
    return SliceHeader(t, (nal[0] >> 5) & 3, first_mb, slice_type, pps_id, frame_num, idr_pic_id)


# ================================================================= canonical PPS / slice header
@dataclasses.dataclass(frozen=True)
class PpsFields:
    """The PPS fields a slice header and slice data depend on (section 7.3.2.2)."""

    pps_id: int
    sps_id: int
    cabac: bool
    bottom_field_pic_order: bool
    num_slice_groups: int
    num_ref_idx_l0_default: int  # num_ref_idx_l0_default_active_minus1 + 1
    weighted_pred: bool
    weighted_bipred_idc: int
    deblocking_control: bool
    redundant_pic_cnt: bool
    pic_init_qp: int = 26  # pic_init_qp_minus26 + 26
    chroma_qp_index_offset: int = 0
    constrained_intra_pred: bool = False


def parse_pps_fields(nal: bytes) -> PpsFields:
    """Parse a PPS NAL unit (type 8, no start code) up to redundant_pic_cnt_present_flag
    (:func:`parse_pps` reads only its head, and accepts slice groups)."""
    r = _parameter_set_reader(nal, NAL_PPS, "a PPS")
    pps_id, sps_id, cabac, bottom = r.ue(), r.ue(), r.flag(), r.flag()
    groups = r.ue() + 1
    if groups > 1:
        raise DecodeError("slice groups (FMO) are not supported")
    l0, _l1 = r.ue() + 1, r.ue() + 1
    weighted, bipred = r.flag(), r.u(2)
    init_qp = r.se() + 26
    r.se()  # pic_init_qs_minus26
    chroma_offset = r.se()
    deblock = r.flag()
    constrained = r.flag()
    redundant = r.flag()
    return PpsFields(pps_id, sps_id, cabac, bottom, groups, l0, weighted, bipred, deblock,
                     redundant, init_qp, chroma_offset, constrained)


@dataclasses.dataclass(frozen=True)
class SliceFields:
    """Every slice header field the canonical profile writes (section 7.3.3), for
    baseline CAVLC slices with pic_order_cnt_type 2. ``num_ref_override``: None when
    num_ref_idx_active_override_flag is 0 (or the slice is I), else
    num_ref_idx_l0_active_minus1. ``dec_ref``: IDR (no_output_of_prior_pics,
    long_term_reference), other reference slices (adaptive_ref_pic_marking_mode,),
    non-reference slices (). ``deblock``: (), (idc,) or (idc, alpha_div2, beta_div2)."""

    nal_byte: int
    first_mb: int
    slice_type: int
    pps_id: int
    frame_num: int
    idr_pic_id: int | None
    num_ref_override: int | None
    dec_ref: tuple[int, ...]
    qp_delta: int
    deblock: tuple[int, ...]

    @property
    def is_idr(self) -> bool:
        return self.nal_byte & 0x1F == NAL_IDR

    @property
    def kind(self) -> int:
        return self.slice_type % 5

    def num_ref_idx_active(self, pps: PpsFields) -> int:
        """num_ref_idx_l0_active_minus1 + 1 for this slice (0 for an I slice)."""
        if self.kind != SLICE_P:
            return 0
        return (pps.num_ref_idx_l0_default if self.num_ref_override is None
                else self.num_ref_override + 1)


def require_canonical_sps(sps: Sps) -> None:
    """Raise ProfileError unless ``sps`` is progressive with pic_order_cnt_type 2."""
    if sps.pic_order_cnt_type != 2 or not sps.frame_mbs_only or sps.separate_colour_plane:
        raise ProfileError("the NAL verifier supports progressive streams with "
                           f"pic_order_cnt_type 2 (got {sps.pic_order_cnt_type})")


def require_canonical_pps(pps: PpsFields) -> None:
    """Raise ProfileError unless ``pps`` is baseline CAVLC without weighted prediction,
    redundant pictures or slice groups."""
    if pps.cabac or pps.weighted_pred or pps.redundant_pic_cnt or pps.num_slice_groups != 1:
        raise ProfileError("the NAL verifier supports baseline CAVLC PPS without weighted "
                           "prediction, redundant pictures or slice groups")


def parse_slice_fields(nal: bytes, sps: Sps, pps: PpsFields) -> tuple[SliceFields, int, int, int]:
    """A slice NAL (no start code) -> (fields, header bits, RBSP int, RBSP bits).

    The header bit count is where slice_data() begins in the RBSP. Raises DecodeError
    for anything the canonical profile never writes (B/SP/SI slices, reference list
    modification, memory management operations, another PPS)."""
    t = nal[0] & 0x1F if nal else -1
    if t not in (NAL_SLICE, NAL_IDR) or nal[0] & 0x80:
        head = f"{nal[0]:#04x}" if nal else "missing"
        raise DecodeError(f"not a baseline slice NAL (header byte {head})")
    value, total = rbsp_int(nal)
    r = BitReader(value.to_bytes(total // 8, "big"))
    first_mb, slice_type, pps_id = r.ue(), r.ue(), r.ue()
    if slice_type % 5 not in (SLICE_P, SLICE_I) or slice_type > 9:
        raise DecodeError(f"slice_type {slice_type} is not P or I")
    if pps_id != pps.pps_id:
        raise DecodeError(f"slice refers to PPS {pps_id}")
    frame_num = r.u(sps.log2_max_frame_num)
    idr_pic_id = r.ue() if t == NAL_IDR else None
    override = None
    if slice_type % 5 == SLICE_P:
        if r.flag():
            override = r.ue()
            if override > 31:
                raise DecodeError(f"num_ref_idx_l0_active_minus1 {override} out of range")
        if r.flag():
            raise DecodeError("ref_pic_list_modification (x264 never writes it here)")
    dec_ref: tuple[int, ...] = ()
    if nal[0] & 0x60:
        if t == NAL_IDR:
            dec_ref = (r.u(1), r.u(1))
        else:
            dec_ref = (r.u(1),)
            if dec_ref[0]:
                raise DecodeError("adaptive_ref_pic_marking (x264 never writes it here)")
    qp_delta = r.se()
    deblock: tuple[int, ...] = ()
    if pps.deblocking_control:
        idc = r.ue()
        deblock = (idc,) if idc == 1 else (idc, r.se(), r.se())
        if idc > 2:
            raise DecodeError(f"disable_deblocking_filter_idc {idc} out of range")
    return (SliceFields(nal[0], first_mb, slice_type, pps_id, frame_num, idr_pic_id, override,
                        dec_ref, qp_delta, deblock), r.pos, value, total)


def compose_slice_header(f: SliceFields, log2_max_frame_num: int, first_mb: int | None = None,
                         frame_num: int | None = None) -> tuple[int, int]:
    """Slice header RBSP bits (without the NAL header byte): (int, bit count); the
    inverse of :func:`parse_slice_fields` for the fields it accepts. ``first_mb`` and
    ``frame_num`` override the fields' values."""
    w = BitWriter().ue(f.first_mb if first_mb is None else first_mb).ue(f.slice_type).ue(f.pps_id)
    fn = f.frame_num if frame_num is None else frame_num
    w.u(log2_max_frame_num, fn % (1 << log2_max_frame_num))
    if f.is_idr:
        w.ue(f.idr_pic_id or 0)
    if f.kind == SLICE_P:
        w.u(1, f.num_ref_override is not None)
        if f.num_ref_override is not None:
            w.ue(f.num_ref_override)
        w.u(1, 0)  # ref_pic_list_modification_flag_l0
    for b in f.dec_ref:
        w.u(1, b)
    w.se(f.qp_delta)
    if f.deblock:
        w.ue(f.deblock[0])
        for v in f.deblock[1:]:
            w.se(v)
    return w.value, w.n


# =============================================================================== rewriters
def rewrite_slice(nal: bytes, sps: Sps, frame_num: int, idr_pic_id: int | None = None) -> bytes:
    """A slice NAL (no start code) with ``frame_num`` (and, for IDR, ``idr_pic_id``)
    replaced; everything else is kept bit for bit. Works for any profile."""
    head = parse_slice_header(nal, sps)
    rbsp = ebsp_to_rbsp(nal[1:])
    r = BitReader(rbsp)
    r.ue(), r.ue(), r.ue()
    r.u(sps.log2_max_frame_num)
    if head.is_idr:
        r.ue()
    payload, nbits = payload_bits(rbsp)
    rest_bits = nbits - r.pos
    rest = payload & ((1 << rest_bits) - 1)
    w = BitWriter().ue(head.first_mb).ue(head.slice_type).ue(head.pps_id)
    w.u(sps.log2_max_frame_num, frame_num % (1 << sps.log2_max_frame_num))
    if head.is_idr:
        w.ue(idr_pic_id if idr_pic_id is not None else head.idr_pic_id)
    return nal_bytes(nal[0], w.bits(), (rest, rest_bits))


def rewrite_sps(nal: bytes, *, log2_max_frame_num: int, width_mbs: int, height_mbs: int) -> bytes:
    """An SPS NAL (baseline/main, pic_order_cnt_type 2) with another log2_max_frame_num
    and picture size (no cropping); every other field, the VUI included, is kept."""
    value, total = rbsp_int(nal)
    r = BitReader(value.to_bytes(total // 8, "big"))
    w = BitWriter().u(24, r.u(24))  # profile_idc, constraint flags, level_idc
    w.ue(r.ue())  # seq_parameter_set_id
    sps = parse_sps(nal)
    if sps.profile_idc not in (66, 77, 88):
        raise ProfileError(f"SPS profile_idc {sps.profile_idc}: the verifier needs baseline/main")
    r.ue()
    if not 4 <= log2_max_frame_num <= 16:
        raise ProfileError(f"log2_max_frame_num {log2_max_frame_num} out of range")
    w.ue(log2_max_frame_num - 4)
    poc = r.ue()
    if poc != 2:
        raise ProfileError(f"pic_order_cnt_type {poc}: the verifier needs 2")
    w.ue(poc).ue(r.ue()).u(1, r.u(1))  # max_num_ref_frames, gaps_in_frame_num_allowed
    r.ue(), r.ue()
    w.ue(width_mbs - 1).ue(height_mbs - 1)
    if not r.flag():
        raise ProfileError("interlaced SPS")
    w.u(1, 1).u(1, r.u(1))  # frame_mbs_only, direct_8x8_inference
    if r.flag():
        for _ in range(4):
            r.ue()
    w.u(1, 0)  # no cropping
    rest = data_bits(value, total, r.pos)  # vui_parameters_present_flag and the VUI
    return nal_bytes(nal[0], w.bits(), rest)
