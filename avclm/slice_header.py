"""H.264 syntax the NAL verifier reads and writes: bit packing, PPS fields, slice headers.

Baseline CAVLC streams as the canonical profile writes them (pic_order_cnt_type 2, one
slice group, no weighted prediction): :func:`parse_slice_fields` reads a slice header
into :class:`SliceFields` and :func:`compose_slice_header` writes it back bit for bit;
:func:`rewrite_sps` makes the small test SPS of :mod:`avclm.verifier`'s one-macroblock
decode check; ``_data_bits`` / ``_nal_bytes`` split and join the header and slice-data
bits of a NAL in RBSP/EBSP form. Section numbers refer to ITU-T H.264.
"""

from __future__ import annotations

import dataclasses
import re

from codeclm.errors import DecodeError, ProfileError

from . import nal as nalmod


# =============================================================================== bits
class _BitWriter:
    """MSB-first bit accumulator (value, nbits) with Exp-Golomb codes."""

    __slots__ = ("n", "value")

    def __init__(self):
        self.value, self.n = 0, 0

    def u(self, n: int, v: int) -> _BitWriter:
        if v < 0 or v >> n:
            raise ValueError(f"{v} does not fit {n} bits")
        self.value, self.n = (self.value << n) | v, self.n + n
        return self

    def ue(self, v: int) -> _BitWriter:
        x = v + 1
        return self.u(2 * x.bit_length() - 1, x)

    def se(self, v: int) -> _BitWriter:
        return self.ue(2 * v - 1 if v > 0 else -2 * v)


#: what canonical EBSP never holds: a start-code prefix, ``00 00 02``, or an escape
#: not followed by a byte <= 3
_BAD_EBSP = re.compile(rb"\x00\x00(?:[\x00-\x02]|\x03(?=[\x04-\xff]))")


_to_ebsp = nalmod.rbsp_to_ebsp


def _ue_len(v: int) -> int:
    return 2 * (v + 1).bit_length() - 1


def _rbsp_int(nal: bytes) -> tuple[int, int]:
    """A NAL (no start code) -> its RBSP as (int, bit count)."""
    rbsp = nalmod.ebsp_to_rbsp(nal[1:])
    return int.from_bytes(rbsp, "big"), 8 * len(rbsp)


def _data_bits(value: int, total: int, start: int) -> tuple[int, int]:
    """RBSP bits from bit ``start`` up to (not including) the rbsp_stop_one_bit:
    (int, bit count). Raises DecodeError without a stop bit after ``start``."""
    tail = value & ((1 << (total - start)) - 1) if total > start else 0
    if tail == 0:
        raise DecodeError("no rbsp_stop_one_bit after the header")
    zeros = (tail & -tail).bit_length() - 1
    return tail >> (zeros + 1), total - start - zeros - 1


def _nal_bytes(nal_byte: int, header: tuple[int, int], data: tuple[int, int]) -> bytes:
    """NAL header byte + RBSP (header bits, data bits, stop bit, zero alignment) in
    EBSP form."""
    (hv, hn), (dv, dn) = header, data
    value, n = (((hv << dn) | dv) << 1) | 1, hn + dn + 1
    pad = -n % 8
    return bytes([nal_byte]) + _to_ebsp((value << pad).to_bytes((n + pad) // 8, "big"))


# =============================================================================== SPS / PPS / slice header
@dataclasses.dataclass(frozen=True)
class PpsFields:
    """The PPS fields a slice header depends on (section 7.3.2.2)."""

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


def parse_pps_fields(nal: bytes) -> PpsFields:
    """Parse a PPS NAL unit (type 8, no start code) up to redundant_pic_cnt_present_flag."""
    if nalmod.nal_type(nal) != nalmod.NAL_PPS:
        raise DecodeError(f"not a PPS (nal_unit_type {nalmod.nal_type(nal)})")
    r = nalmod.BitReader(nalmod.ebsp_to_rbsp(nal[1:]))
    pps_id, sps_id, cabac, bottom = r.ue(), r.ue(), r.flag(), r.flag()
    groups = r.ue() + 1
    if groups > 1:
        raise DecodeError("slice groups (FMO) are not supported")
    l0, _l1 = r.ue() + 1, r.ue() + 1
    weighted, bipred = r.flag(), r.u(2)
    r.se(), r.se(), r.se()  # pic_init_qp_minus26, pic_init_qs_minus26, chroma_qp_index_offset
    deblock = r.flag()
    r.u(1)  # constrained_intra_pred_flag
    redundant = r.flag()
    return PpsFields(pps_id, sps_id, cabac, bottom, groups, l0, weighted, bipred, deblock, redundant)


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
        return self.nal_byte & 0x1F == nalmod.NAL_IDR

    @property
    def kind(self) -> int:
        return self.slice_type % 5


def _check_sps(sps: nalmod.Sps) -> None:
    if sps.pic_order_cnt_type != 2 or not sps.frame_mbs_only or sps.separate_colour_plane:
        raise ProfileError("the NAL verifier supports progressive streams with "
                           f"pic_order_cnt_type 2 (got {sps.pic_order_cnt_type})")


def _check_pps(pps: PpsFields) -> None:
    if pps.cabac or pps.weighted_pred or pps.redundant_pic_cnt or pps.num_slice_groups != 1:
        raise ProfileError("the NAL verifier supports baseline CAVLC PPS without weighted "
                           "prediction, redundant pictures or slice groups")


def parse_slice_fields(nal: bytes, sps: nalmod.Sps, pps: PpsFields) -> tuple[SliceFields, int, int, int]:
    """A slice NAL (no start code) -> (fields, header bits, RBSP int, RBSP bits).

    The header bit count is where slice_data() begins in the RBSP. Raises DecodeError
    for anything the canonical profile never writes (B/SP/SI slices, reference list
    modification, memory management operations, another PPS)."""
    t = nalmod.nal_type(nal)
    if t not in (nalmod.NAL_SLICE, nalmod.NAL_IDR) or nal[0] & 0x80:
        raise DecodeError(f"not a baseline slice NAL (header byte {nal[0]:#04x})")
    value, total = _rbsp_int(nal)
    r = nalmod.BitReader(value.to_bytes(total // 8, "big"))
    first_mb, slice_type, pps_id = r.ue(), r.ue(), r.ue()
    if slice_type % 5 not in (nalmod.SLICE_P, nalmod.SLICE_I) or slice_type > 9:
        raise DecodeError(f"slice_type {slice_type} is not P or I")
    if pps_id != pps.pps_id:
        raise DecodeError(f"slice refers to PPS {pps_id}")
    frame_num = r.u(sps.log2_max_frame_num)
    idr_pic_id = r.ue() if t == nalmod.NAL_IDR else None
    override = None
    if slice_type % 5 == nalmod.SLICE_P:
        if r.flag():
            override = r.ue()
            if override > 31:
                raise DecodeError(f"num_ref_idx_l0_active_minus1 {override} out of range")
        if r.flag():
            raise DecodeError("ref_pic_list_modification (x264 never writes it here)")
    dec_ref: tuple[int, ...] = ()
    if nal[0] & 0x60:
        if t == nalmod.NAL_IDR:
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
    w = _BitWriter().ue(f.first_mb if first_mb is None else first_mb).ue(f.slice_type).ue(f.pps_id)
    fn = f.frame_num if frame_num is None else frame_num
    w.u(log2_max_frame_num, fn % (1 << log2_max_frame_num))
    if f.is_idr:
        w.ue(f.idr_pic_id or 0)
    if f.kind == nalmod.SLICE_P:
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


def rewrite_sps(nal: bytes, *, log2_max_frame_num: int, width_mbs: int, height_mbs: int) -> bytes:
    """An SPS NAL (baseline/main, pic_order_cnt_type 2) with another log2_max_frame_num
    and picture size (no cropping); every other field, the VUI included, is kept."""
    value, total = _rbsp_int(nal)
    r = nalmod.BitReader(value.to_bytes(total // 8, "big"))
    w = _BitWriter().u(24, r.u(24))  # profile_idc, constraint flags, level_idc
    w.ue(r.ue())  # seq_parameter_set_id
    sps = nalmod.parse_sps(nal)
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
    rest = _data_bits(value, total, r.pos)  # vui_parameters_present_flag and the VUI
    return _nal_bytes(nal[0], (w.value, w.n), rest)
