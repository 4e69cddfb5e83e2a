"""The macroblock layer of canonical H.264 slices as a checkable grammar.

Everything after the slice header of a baseline CAVLC slice holding one macroblock
(ITU-T H.264 7.3.4 ``slice_data()``, 7.3.5 ``macroblock_layer()``, 7.3.5.3
``residual_block_cavlc()``, 9.2 CAVLC parsing):

- P slices: ``mb_skip_run`` 1 (a P_Skip macroblock, nothing follows) or 0 and one
  macroblock; I slices: one macroblock;
- ``mb_type``: I_NxN, Intra16x16 with DC prediction (the only Intra16x16 mode without
  neighbours), I_PCM; in P slices also P_L0_16x16, P_L0_L0_16x8, P_L0_L0_8x16, P_8x8
  (P_8x8ref0, which x264 never writes, is left out);
- intra 4x4 prediction modes restricted to those whose neighbours are available *inside*
  the macroblock (with one macroblock per slice everything outside it is unavailable),
  ``intra_chroma_pred_mode`` DC only;
- ``ref_idx_l0`` te(v) within the slice's active reference count, ``mvd_l0`` se(v)
  within +-:data:`MAX_MVD` quarter samples, ``sub_mb_type`` 0..3;
- ``coded_block_pattern`` me(v) (Table 9-4, chroma_format_idc 1), ``mb_qp_delta``
  -26..25 (the decoder wraps QP into 0..51);
- the residual: ``coeff_token`` (Table 9-5) with nC from the blocks already coded in the
  same macroblock, trailing-ones signs, level prefix/suffix with suffixLength
  adaptation (level_prefix <= 15, the baseline limit), ``total_zeros`` (Tables 9-7,
  9-8, 9-9a), ``run_before`` (Table 9-10) for luma 4x4, Intra16x16 DC/AC, chroma DC
  and chroma AC blocks; I_PCM alignment and samples.

Every variable-length code is read through a :class:`Vlc` that holds only the codes of
*allowed* symbols (a coeff_token with more coefficients than the block holds, a
total_zeros or run_before that would overrun it, a prediction mode without neighbours
are not codes at all), so a bit prefix is accepted iff some continuation of it is a
valid macroblock: :meth:`SliceDataGrammar.prefix_state` is exact, which is what token
masks need.

Units: bit positions count RBSP bits after the NAL header byte; ``(value, nbits)``
pairs hold bits MSB first.
"""

from __future__ import annotations

import dataclasses
import functools

from codeclm.errors import DecodeError

from .bits import SLICE_I, SLICE_P, PpsFields, SliceFields

#: largest |mvd| component accepted, in quarter samples (x264's search never comes near)
MAX_MVD = 2048
#: largest level_prefix in Baseline/Main/Extended bitstreams (9.2.2.1)
MAX_LEVEL_PREFIX = 15


class NeedMoreBits(Exception):
    """The bits end inside a syntax element that some continuation completes."""


class SyntaxReject(DecodeError):
    """The bits break the macroblock-layer grammar."""


# =============================================================================== VLC tables
class Vlc:
    """A prefix code over allowed symbols: ``codes`` maps (length, bits) -> symbol;
    ``prefixes`` holds every proper prefix (length, bits) of a code."""

    __slots__ = ("codes", "max_len", "prefixes")

    def __init__(self, codes: dict[tuple[int, int], object]):
        self.codes = codes
        self.max_len = max((n for n, _ in codes), default=0)
        self.prefixes = {(k, v >> (n - k)) for n, v in codes for k in range(n)}


def _vlc_from_lists(lens: list[int], bits: list[int], symbols: list, allowed=None) -> Vlc:
    codes = {}
    for n, b, s in zip(lens, bits, symbols, strict=True):
        if n and (allowed is None or allowed(s)):
            codes[(n, b)] = s
    return Vlc(codes)


# Table 9-5, rows (TrailingOnes, TotalCoeff) as [4 * TotalCoeff + TrailingOnes]: code
# lengths and values for 0 <= nC < 2, 2 <= nC < 4, 4 <= nC < 8 and 8 <= nC.
_CT_LEN = (
    (1, 0, 0, 0, 6, 2, 0, 0, 8, 6, 3, 0, 9, 8, 7, 5, 10, 9, 8, 6, 11, 10, 9, 7, 13, 11, 10, 8,
     13, 13, 11, 9, 13, 13, 13, 10, 14, 14, 13, 11, 14, 14, 14, 13, 15, 15, 14, 14, 15, 15,
     15, 14, 16, 15, 15, 15, 16, 16, 16, 15, 16, 16, 16, 16, 16, 16, 16, 16),
    (2, 0, 0, 0, 6, 2, 0, 0, 6, 5, 3, 0, 7, 6, 6, 4, 8, 6, 6, 4, 8, 7, 7, 5, 9, 8, 8, 6,
     11, 9, 9, 6, 11, 11, 11, 7, 12, 11, 11, 9, 12, 12, 12, 11, 12, 12, 12, 11, 13, 13, 13,
     12, 13, 13, 13, 13, 13, 14, 13, 13, 14, 14, 14, 13, 14, 14, 14, 14),
    (4, 0, 0, 0, 6, 4, 0, 0, 6, 5, 4, 0, 6, 5, 5, 4, 7, 5, 5, 4, 7, 5, 5, 4, 7, 6, 6, 4,
     7, 6, 6, 4, 8, 7, 7, 5, 8, 8, 7, 6, 9, 8, 8, 7, 9, 9, 8, 8, 9, 9, 9, 8, 10, 9, 9, 9,
     10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10),
    tuple(6 if t1 <= min(tc, 3) else 0 for tc in range(17) for t1 in range(4)),
)
_CT_BITS = (
    (1, 0, 0, 0, 5, 1, 0, 0, 7, 4, 1, 0, 7, 6, 5, 3, 7, 6, 5, 3, 7, 6, 5, 4, 15, 6, 5, 4,
     11, 14, 5, 4, 8, 10, 13, 4, 15, 14, 9, 4, 11, 10, 13, 12, 15, 14, 9, 12, 11, 10, 13, 8,
     15, 1, 9, 12, 11, 14, 13, 8, 7, 10, 9, 12, 4, 6, 5, 8),
    (3, 0, 0, 0, 11, 2, 0, 0, 7, 7, 3, 0, 7, 10, 9, 5, 7, 6, 5, 4, 4, 6, 5, 6, 7, 6, 5, 8,
     15, 6, 5, 4, 11, 14, 13, 4, 15, 10, 9, 4, 11, 14, 13, 12, 8, 10, 9, 8, 15, 14, 13, 12,
     11, 10, 9, 12, 7, 11, 6, 8, 9, 8, 10, 1, 7, 6, 5, 4),
    (15, 0, 0, 0, 15, 14, 0, 0, 11, 15, 13, 0, 8, 12, 14, 12, 15, 10, 11, 11, 11, 8, 9, 10,
     9, 14, 13, 9, 8, 10, 9, 8, 15, 14, 13, 13, 11, 14, 10, 12, 15, 10, 13, 12, 11, 14, 9,
     12, 8, 10, 13, 8, 13, 7, 9, 12, 9, 12, 11, 10, 5, 8, 7, 6, 1, 4, 3, 2),
    (3, 0, 0, 0, 0, 1, 0, 0, 4, 5, 6, 0) + tuple(range(8, 64)),
)
# chroma DC (nC == -1), [4 * TotalCoeff + TrailingOnes] for TotalCoeff 0..4
_CDC_CT_LEN = (2, 0, 0, 0, 6, 1, 0, 0, 6, 6, 3, 0, 6, 7, 7, 6, 6, 8, 8, 7)
_CDC_CT_BITS = (1, 0, 0, 0, 7, 1, 0, 0, 4, 6, 1, 0, 3, 3, 2, 5, 2, 3, 2, 0)
# Tables 9-7 and 9-8: total_zeros for TotalCoeff 1..15 (4x4 blocks), index total_zeros
_TZ_LEN = (
    (1, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 9), (3, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 6, 6, 6, 6),
    (4, 3, 3, 3, 4, 4, 3, 3, 4, 5, 5, 6, 5, 6), (5, 3, 4, 4, 3, 3, 3, 4, 3, 4, 5, 5, 5),
    (4, 4, 4, 3, 3, 3, 3, 3, 4, 5, 4, 5), (6, 5, 3, 3, 3, 3, 3, 3, 4, 3, 6),
    (6, 5, 3, 3, 3, 2, 3, 4, 3, 6), (6, 4, 5, 3, 2, 2, 3, 3, 6), (6, 6, 4, 2, 2, 3, 2, 5),
    (5, 5, 3, 2, 2, 2, 4), (4, 4, 3, 3, 1, 3), (4, 4, 2, 1, 3), (3, 3, 1, 2), (2, 2, 1), (1, 1),
)
_TZ_BITS = (
    (1, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 1), (7, 6, 5, 4, 3, 5, 4, 3, 2, 3, 2, 3, 2, 1, 0),
    (5, 7, 6, 5, 4, 3, 4, 3, 2, 3, 2, 1, 1, 0), (3, 7, 5, 4, 6, 5, 4, 3, 3, 2, 2, 1, 0),
    (5, 4, 3, 7, 6, 5, 4, 3, 2, 1, 1, 0), (1, 1, 7, 6, 5, 4, 3, 2, 1, 1, 0),
    (1, 1, 5, 4, 3, 3, 2, 1, 1, 0), (1, 1, 1, 3, 3, 2, 2, 1, 0), (1, 0, 1, 3, 2, 1, 1, 1),
    (1, 0, 1, 3, 2, 1, 1), (0, 1, 1, 2, 1, 3), (0, 1, 1, 1, 1), (0, 1, 1, 1), (0, 1, 1), (0, 1),
)
# Table 9-9a: chroma DC (4:2:0) total_zeros for TotalCoeff 1..3
_CDC_TZ_LEN = ((1, 2, 3, 3), (1, 2, 2), (1, 1))
_CDC_TZ_BITS = ((1, 1, 1, 0), (1, 1, 0), (1, 0))
# Table 9-10: run_before for zerosLeft 1..6 and > 6, index run_before
_RUN_LEN = ((1, 1), (1, 2, 2), (2, 2, 2, 2), (2, 2, 2, 3, 3), (2, 2, 3, 3, 3, 3),
            (2, 3, 3, 3, 3, 3, 3), (3, 3, 3, 3, 3, 3, 3, 4, 5, 6, 7, 8, 9, 10, 11))
_RUN_BITS = ((1, 0), (1, 1, 0), (3, 2, 1, 0), (3, 2, 1, 1, 0), (3, 2, 3, 2, 1, 0),
             (3, 0, 1, 3, 2, 5, 4), (7, 6, 5, 4, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1))
# Table 9-4 (chroma_format_idc 1): coded_block_pattern by codeNum, Intra_4x4 and Inter
CBP_INTRA = (47, 31, 15, 0, 23, 27, 29, 30, 7, 11, 13, 14, 39, 43, 45, 46, 16, 3, 5, 10, 12,
             19, 21, 26, 28, 35, 37, 42, 44, 1, 2, 4, 8, 17, 18, 20, 24, 6, 9, 22, 25, 32, 33,
             34, 36, 40, 38, 41)
CBP_INTER = (0, 16, 1, 2, 4, 8, 32, 3, 5, 10, 12, 15, 47, 7, 11, 13, 14, 6, 9, 31, 35, 37, 42,
             44, 33, 34, 36, 40, 39, 43, 45, 46, 17, 18, 20, 24, 19, 21, 26, 28, 23, 27, 29, 30,
             22, 25, 38, 41)


@functools.cache
def coeff_token_vlc(nc: int, max_coeff: int) -> Vlc:
    """coeff_token codes for context ``nc`` (-1: chroma DC) whose TotalCoeff fits a block
    of ``max_coeff`` coefficients; symbols (TotalCoeff, TrailingOnes)."""
    if nc == -1:
        lens, bits, rows = _CDC_CT_LEN, _CDC_CT_BITS, 5
    else:
        t = 0 if nc < 2 else 1 if nc < 4 else 2 if nc < 8 else 3
        lens, bits, rows = _CT_LEN[t], _CT_BITS[t], 17
    symbols = [(i // 4, i % 4) for i in range(4 * rows)]
    return _vlc_from_lists(list(lens), list(bits), symbols, lambda s: s[0] <= max_coeff)


@functools.cache
def total_zeros_vlc(total_coeff: int, max_coeff: int) -> Vlc:
    """total_zeros codes for ``total_coeff`` (1..max-1) that fit the block."""
    if max_coeff == 4:
        lens, bits = _CDC_TZ_LEN[total_coeff - 1], _CDC_TZ_BITS[total_coeff - 1]
    else:
        lens, bits = _TZ_LEN[total_coeff - 1], _TZ_BITS[total_coeff - 1]
    return _vlc_from_lists(list(lens), list(bits), list(range(len(lens))),
                           lambda tz: tz + total_coeff <= max_coeff)


@functools.cache
def run_before_vlc(zeros_left: int) -> Vlc:
    """run_before codes for ``zeros_left`` (>= 1) zeros still to place."""
    i = min(zeros_left, 7) - 1
    return _vlc_from_lists(list(_RUN_LEN[i]), list(_RUN_BITS[i]), list(range(len(_RUN_LEN[i]))),
                           lambda r: r <= zeros_left)


@functools.cache
def ue_vlc(allowed: tuple[int, ...]) -> Vlc:
    """ue(v) codes of the ``allowed`` values."""
    codes = {}
    for v in allowed:
        x = v + 1
        codes[(2 * x.bit_length() - 1, x)] = v
    return Vlc(codes)


@functools.cache
def se_vlc(lo: int, hi: int) -> Vlc:
    """se(v) codes of the values lo..hi."""
    codes = {}
    for v in range(lo, hi + 1):
        x = (2 * v - 1 if v > 0 else -2 * v) + 1
        codes[(2 * x.bit_length() - 1, x)] = v
    return Vlc(codes)


@functools.cache
def te_vlc(range_max: int) -> Vlc:
    """te(v) codes of 0..range_max (range_max >= 1)."""
    if range_max == 1:
        return Vlc({(1, 1): 0, (1, 0): 1})
    return ue_vlc(tuple(range(range_max + 1)))


@functools.cache
def level_prefix_vlc() -> Vlc:
    """level_prefix: that many zero bits and a one, 0..MAX_LEVEL_PREFIX."""
    return Vlc({(p + 1, 1): p for p in range(MAX_LEVEL_PREFIX + 1)})


# intra 4x4 modes needing the top / the left neighbour samples (8.3.1.2)
_NEEDS_TOP = frozenset({0, 3, 4, 5, 6, 7})
_NEEDS_LEFT = frozenset({1, 4, 5, 6, 8})


@functools.cache
def level_suffix_size(prefix: int, suffix_length: int) -> int:
    """Bits of level_suffix after a level_prefix (H.264 9.2.2.1): 4 for prefix 14 at
    suffixLength 0, prefix - 3 from prefix 15 on, else suffixLength."""
    if prefix == 14 and suffix_length == 0:
        return 4
    if prefix >= 15:
        return prefix - 3
    return suffix_length


@functools.cache
def intra4x4_mode_vlc(pred: int, left: bool, top: bool) -> Vlc:
    """prev_intra4x4_pred_mode_flag and rem_intra4x4_pred_mode as one code over the
    modes allowed with those neighbours: ``1`` for ``pred``, ``0 rrr`` for the others."""
    codes = {}
    for mode in range(9):
        if (mode in _NEEDS_TOP and not top) or (mode in _NEEDS_LEFT and not left):
            continue
        if mode == pred:
            codes[(1, 1)] = mode
        else:
            codes[(4, mode if mode < pred else mode - 1)] = mode
    return Vlc(codes)


# luma 4x4 block index -> (x, y) in 4x4 units (6.4.3), and back
BLOCK_XY = tuple((2 * ((b >> 2) & 1) + (b & 1), 2 * (b >> 3) + ((b >> 1) & 1)) for b in range(16))
_BLOCK_AT = {xy: b for b, xy in enumerate(BLOCK_XY)}

# mb_type values: I slices (7-11), P slices (7-13) are these + 5 for intra
I_NXN, I_PCM = 0, 25
#: Intra16x16 types with Intra16x16PredMode 2 (DC): mb_type - 1 = 4 * (cbp chroma + 3 *
#: (cbp luma != 0)) + pred mode
I16_DC_TYPES = tuple(1 + 2 + 4 * k for k in range(6))
P_L0_16X16, P_L0_L0_16X8, P_L0_L0_8X16, P_8X8 = 0, 1, 2, 3
P_TYPES = (P_L0_16X16, P_L0_L0_16X8, P_L0_L0_8X16, P_8X8)
SUB_PARTS = (1, 2, 2, 4)  # sub_mb_type 0..3: 8x8, 8x4, 4x8, 4x4


# =============================================================================== parser
class _Reader:
    """Bits of a prefix: reading past the end raises NeedMoreBits."""

    __slots__ = ("n", "pos", "value")

    def __init__(self, value: int, n: int):
        self.value, self.n, self.pos = value, n, 0

    def u(self, k: int) -> int:
        if self.pos + k > self.n:
            raise NeedMoreBits
        self.pos += k
        return (self.value >> (self.n - self.pos)) & ((1 << k) - 1)

    def zeros(self, k: int, what: str) -> None:
        """``k`` bits that must be zero (those present are checked first)."""
        have = min(k, self.n - self.pos)
        if have and self.u(have):
            raise SyntaxReject(f"{what} is not zero at bit {self.pos}")
        if have < k:
            raise NeedMoreBits

    def vlc(self, table: Vlc, what: str):
        code, length = 0, 0
        codes, prefixes = table.codes, table.prefixes
        while True:
            if (length, code) not in prefixes:
                raise SyntaxReject(f"invalid {what} at bit {self.pos}")
            if self.pos >= self.n:
                raise NeedMoreBits
            code = (code << 1) | ((self.value >> (self.n - 1 - self.pos)) & 1)
            self.pos += 1
            length += 1
            sym = codes.get((length, code))
            if sym is not None:
                return sym


@dataclasses.dataclass(frozen=True)
class MacroblockContext:
    """What the macroblock layer depends on: slice kind (``SLICE_I``/``SLICE_P``), the
    active reference count, and where slice_data() starts in the RBSP (bits; for the
    I_PCM alignment)."""

    kind: int
    num_ref_idx_active: int
    data_start_bit: int

    @classmethod
    def of(cls, fields: SliceFields, pps: PpsFields, header_bits: int) -> MacroblockContext:
        return cls(fields.kind, fields.num_ref_idx_active(pps), header_bits)


def _residual_block(r: _Reader, nc: int, max_coeff: int, what: str) -> int:
    """One residual_block_cavlc(); returns TotalCoeff."""
    total, t1 = r.vlc(coeff_token_vlc(nc, max_coeff), f"coeff_token ({what})")
    if total == 0:
        return 0
    r.u(t1)  # trailing_ones_sign_flag
    suffix_length = 1 if total > 10 and t1 < 3 else 0
    for i in range(t1, total):
        prefix = r.vlc(level_prefix_vlc(), f"level_prefix ({what})")
        size = level_suffix_size(prefix, suffix_length)
        code = (min(15, prefix) << suffix_length) + r.u(size)
        if prefix >= 15 and suffix_length == 0:
            code += 15
        if i == t1 and t1 < 3:
            code += 2
        level = (code + 2) >> 1 if code % 2 == 0 else (-code - 1) >> 1
        if suffix_length == 0:
            suffix_length = 1
        if abs(level) > (3 << (suffix_length - 1)) and suffix_length < 6:
            suffix_length += 1
    zeros_left = 0
    if total < max_coeff:
        zeros_left = r.vlc(total_zeros_vlc(total, max_coeff), f"total_zeros ({what})")
    for _ in range(total - 1):
        if zeros_left <= 0:
            break
        zeros_left -= r.vlc(run_before_vlc(zeros_left), f"run_before ({what})")
    return total


def nc_from(counts, left: int | None, top: int | None) -> int:
    """nC from the TotalCoeff of the left and top blocks (None: unavailable);
    ``counts``: TotalCoeff per block index (a dict or a tuple)."""
    if left is not None and top is not None:
        return (counts[left] + counts[top] + 1) >> 1
    if left is not None:
        return counts[left]
    if top is not None:
        return counts[top]
    return 0


def luma_neighbours(b: int) -> tuple[int | None, int | None]:
    x, y = BLOCK_XY[b]
    return (_BLOCK_AT[(x - 1, y)] if x else None), (_BLOCK_AT[(x, y - 1)] if y else None)


def _residual(r: _Reader, cbp: int, intra16: bool) -> None:
    """residual() for chroma_format_idc 1 without 8x8 transforms."""
    counts = dict.fromkeys(range(16), 0)
    if intra16:
        _residual_block(r, 0, 16, "Intra16x16 DC")
    for b in range(16):
        if not cbp & (1 << (b >> 2)):
            continue
        nc = nc_from(counts, *luma_neighbours(b))
        counts[b] = _residual_block(r, nc, 15 if intra16 else 16,
                                    "Intra16x16 AC" if intra16 else "luma 4x4")
    chroma = cbp >> 4
    if chroma:
        for _ in range(2):
            _residual_block(r, -1, 4, "chroma DC")
    if chroma & 2:
        for _ in range(2):
            cc = dict.fromkeys(range(4), 0)
            for b in range(4):
                nc = nc_from(cc, b - 1 if b & 1 else None, b - 2 if b >= 2 else None)
                cc[b] = _residual_block(r, nc, 15, "chroma AC")


def _mb_pred_inter(r: _Reader, ctx: MacroblockContext, parts: int) -> None:
    refs = ctx.num_ref_idx_active
    if refs > 1:
        for _ in range(parts):
            r.vlc(te_vlc(refs - 1), "ref_idx_l0")
    mvd = se_vlc(-MAX_MVD, MAX_MVD)
    for _ in range(2 * parts):
        r.vlc(mvd, "mvd_l0")


def _sub_mb_pred(r: _Reader, ctx: MacroblockContext) -> None:
    subs = [r.vlc(ue_vlc((0, 1, 2, 3)), "sub_mb_type") for _ in range(4)]
    refs = ctx.num_ref_idx_active
    if refs > 1:
        for _ in range(4):
            r.vlc(te_vlc(refs - 1), "ref_idx_l0")
    mvd = se_vlc(-MAX_MVD, MAX_MVD)
    for s in subs:
        for _ in range(2 * SUB_PARTS[s]):
            r.vlc(mvd, "mvd_l0")


def _intra4x4_modes(r: _Reader) -> None:
    modes: dict[int, int] = {}
    for b in range(16):
        left, top = luma_neighbours(b)
        pred = 2 if left is None or top is None else min(modes[left], modes[top])
        modes[b] = r.vlc(intra4x4_mode_vlc(pred, left is not None, top is not None),
                         "intra 4x4 prediction mode")


_CHROMA_DC_ONLY = (0,)
_QP_DELTA = (-26, 25)


def _macroblock_layer(r: _Reader, ctx: MacroblockContext) -> None:
    if ctx.kind == SLICE_I:
        allowed = (I_NXN, *I16_DC_TYPES, I_PCM)
        mb_type = r.vlc(ue_vlc(allowed), "mb_type")
    else:
        allowed = (*P_TYPES, *(5 + t for t in (I_NXN, *I16_DC_TYPES, I_PCM)))
        mb_type = r.vlc(ue_vlc(allowed), "mb_type")
        if mb_type < 5:
            if mb_type == P_8X8:
                _sub_mb_pred(r, ctx)
            else:
                _mb_pred_inter(r, ctx, 1 if mb_type == P_L0_16X16 else 2)
            cbp = CBP_INTER[r.vlc(ue_vlc(tuple(range(48))), "coded_block_pattern")]
            if cbp:
                r.vlc(se_vlc(*_QP_DELTA), "mb_qp_delta")
                _residual(r, cbp, False)
            return
        mb_type -= 5
    if mb_type == I_PCM:
        r.zeros(-(ctx.data_start_bit + r.pos) % 8, "pcm_alignment_zero_bit")
        for _ in range(384):  # pcm_sample_luma, pcm_sample_chroma (8-bit)
            r.u(8)
        return
    if mb_type == I_NXN:
        _intra4x4_modes(r)
    r.vlc(ue_vlc(_CHROMA_DC_ONLY), "intra_chroma_pred_mode")
    if mb_type == I_NXN:
        cbp = CBP_INTRA[r.vlc(ue_vlc(tuple(range(48))), "coded_block_pattern")]
        if cbp:
            r.vlc(se_vlc(*_QP_DELTA), "mb_qp_delta")
            _residual(r, cbp, False)
        return
    k = (mb_type - 1) // 4
    cbp = (k % 3) << 4 | (15 if k >= 3 else 0)
    r.vlc(se_vlc(*_QP_DELTA), "mb_qp_delta")
    _residual(r, cbp, True)


def slice_data_syntax(r, ctx: MacroblockContext) -> None:
    """Read slice_data() of one macroblock from ``r``: any reader with ``vlc(table,
    what)``, ``u(k)``, ``zeros(k, what)`` and ``pos`` (bits read so far of slice data)."""
    if ctx.kind == SLICE_P:
        if r.vlc(ue_vlc((0, 1)), "mb_skip_run") == 1:
            return
    elif ctx.kind != SLICE_I:
        raise SyntaxReject(f"slice type {ctx.kind} is not I or P")
    _macroblock_layer(r, ctx)


# =============================================================================== API
ACCEPT_COMPLETE = "complete"
ACCEPT_PREFIX = "prefix"


def parse_macroblock_bits(value: int, n: int, ctx: MacroblockContext) -> int | None:
    """Parse slice_data() from ``n`` bits; the bit count it ends at, or None when the bits
    end first (a valid prefix). Raises SyntaxReject when the bits break the grammar."""
    r = _Reader(value, n)
    try:
        slice_data_syntax(r, ctx)
    except NeedMoreBits:
        return None
    return r.pos


def check_slice_data(data: tuple[int, int], ctx: MacroblockContext) -> str | None:
    """A complete slice_data() (bits up to, not including, the rbsp_stop_one_bit): None
    if it is exactly one valid macroblock, else the reason."""
    value, n = data
    try:
        end = parse_macroblock_bits(value, n, ctx)
    except SyntaxReject as e:
        return str(e)
    if end is None:
        return "slice data ends inside the macroblock"
    if end != n:
        return f"{n - end} bits after the macroblock"
    return None


def prefix_state(value: int, n: int, ctx: MacroblockContext) -> str | None:
    """``n`` RBSP bits after the slice header, as written so far (the stop bit and
    alignment zeros may be among them): ACCEPT_COMPLETE if they are a whole macroblock
    followed by the rbsp_stop_one_bit and zeros (the NAL may end here), ACCEPT_PREFIX if
    some continuation completes them, None if none does.

    The parser never reads past the macroblock, so bits that hold one (and a stop bit)
    parse to the macroblock's end; bits that end inside it need more."""
    try:
        end = parse_macroblock_bits(value, n, ctx)
    except SyntaxReject:
        return None
    if end is None or end == n:
        return ACCEPT_PREFIX
    rest = n - end
    tail = value & ((1 << rest) - 1)
    return ACCEPT_COMPLETE if tail == 1 << (rest - 1) else None
