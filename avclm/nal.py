"""H.264 Annex-B NAL units: split/join, NAL headers, SPS/PPS, grouping into pictures.

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

The bit-level syntax (bit reader, Exp-Golomb codes, emulation prevention, SPS/PPS,
slice headers) is in :mod:`avclm.bits`; its names are re-exported here. Every parse error
raises :class:`codeclm.errors.DecodeError`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator

from codeclm.errors import DecodeError

from .bits import (  # noqa: F401  (re-exported: the NAL tools' public names)
    NAL_IDR,
    NAL_PPS,
    NAL_SLICE,
    NAL_SLICE_DPA,
    NAL_SLICE_DPB,
    NAL_SLICE_DPC,
    NAL_SPS,
    PICTURE_NAL_TYPES,
    SLICE_B,
    SLICE_I,
    SLICE_P,
    SLICE_SI,
    SLICE_SP,
    SLICE_TYPE_NAMES,
    BitReader,
    Pps,
    SliceHeader,
    Sps,
    ebsp_to_rbsp,
    parse_pps,
    parse_slice_header,
    parse_sps,
    rbsp_to_ebsp,
)

START_CODE = b"\x00\x00\x01"
LONG_START_CODE = b"\x00\x00\x00\x01"
#: a start code of either length (regex over bytes; the 4-byte form wins when present):
#: the unit marker of the h264 modality record (:data:`avclm.modality.RECORD`)
START_CODE_PATTERN = rb"\x00\x00\x00?\x01"
START_CODE_RE = re.compile(START_CODE_PATTERN)

# nal_unit_type values (Table 7-1); the slice types and slice_type values live with the
# slice header syntax in avclm.bits
NAL_SEI = 6
NAL_AUD = 9
NAL_END_SEQ = 10
NAL_END_STREAM = 11
NAL_FILLER = 12
PARAMETER_SET_TYPES = frozenset({NAL_SPS, NAL_PPS})


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


# --------------------------------------------------------------------------- slice header

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
