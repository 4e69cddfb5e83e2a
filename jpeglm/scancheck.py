"""Pure-Python verification of a baseline JPEG scan, one restart interval (MCU) at a time.

libjpeg only *warns* about corrupt entropy-coded data (bad Huffman codes, wrong
restart markers, premature end) and Pillow does not surface those warnings, so
strict decoding cannot rely on it. This module Huffman-decodes every block of every
MCU with the stream's own tables and checks, per MCU:

* every code is in the table (DC categories <= 11, AC sizes <= 10, valid run/size);
* no block runs past coefficient 63;
* the MCU's data ends with fewer than 8 padding bits, all ones, and no extra bytes;
* ``0xFF`` bytes inside entropy data are stuffed (``FF 00``);

and, between MCUs, that MCU ``i`` is followed by ``RST(i mod 8)`` (the last by EOI)
and that nothing follows EOI. Coefficient *values* are not reconstructed; only the
bitstream's grammar is checked, which is exactly what a decoder needs.

It is independent of the sampling grammar in the rest of ``jpeglm`` on purpose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from codeclm.errors import DecodeError

#: a marker inside entropy-coded data: 0xFF not followed by a stuffed 0x00
#: (a trailing lone 0xFF also matches: a marker cut in half)
MARKER = re.compile(rb"\xff(?!\x00)")

_PAD = 64  # one-bits appended beyond the data so that 16-bit peeks never underflow

SOF0, DHT, SOS, DRI = 0xC0, 0xC4, 0xDA, 0xDD


def marker_name(b: int) -> str:
    if 0xD0 <= b <= 0xD7:
        return f"RST{b - 0xD0}"
    return {0xD9: "EOI", 0xD8: "SOI"}.get(b, f"FF{b:02X}")


def segments(data: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """Marker segments of a JPEG header: ``([(marker, start, end), ...], scan_start)``.

    ``data`` must start with SOI; parsing stops after the SOS segment, whose end is
    ``scan_start``. ``start`` is the offset of the 0xFF, ``end`` one past the segment.
    Standalone tables streams (SOI, tables, EOI) return ``scan_start = -1``.
    """
    if data[:2] != b"\xff\xd8":
        raise DecodeError("not a JPEG stream (no SOI marker)")
    out = []
    i = 2
    while True:
        if i + 2 <= len(data) and data[i:i + 2] == b"\xff\xd9":
            return out, -1
        if i + 4 > len(data):
            raise DecodeError(f"JPEG header ends early at byte {i}")
        if data[i] != 0xFF:
            raise DecodeError(f"expected a marker at byte {i}, found {data[i]:#04x}")
        m = data[i + 1]
        n = int.from_bytes(data[i + 2:i + 4], "big")
        if n < 2 or i + 2 + n > len(data):
            raise DecodeError(f"JPEG header segment {marker_name(m)} at byte {i} is cut off")
        out.append((m, i, i + 2 + n))
        i += 2 + n
        if m == SOS:
            return out, i


def _lut(bits: bytes, vals: bytes) -> list[int]:
    """A 65536-entry table: 16-bit peek -> ``(code length << 8) | symbol``, 0 if invalid."""
    lut = [0] * 65536
    code = 0
    k = 0
    for length in range(1, 17):
        for _ in range(bits[length - 1]):
            lo = code << (16 - length)
            hi = (code + 1) << (16 - length)
            entry = (length << 8) | vals[k]
            lut[lo:hi] = [entry] * (hi - lo)
            code += 1
            k += 1
        code <<= 1
    return lut


def huffman_tables(data: bytes) -> dict[tuple[int, int], list[int]]:
    """All DHT tables in a JPEG (or tables-only) stream: ``{(class, id): lut}``.

    class 0 = DC, 1 = AC. Later definitions replace earlier ones.
    """
    if data[:2] != b"\xff\xd8":  # bare table segments
        data = b"\xff\xd8" + data + b"\xff\xd9"
    segs, _ = segments(data)
    tables = {}
    for m, s, e in segs:
        if m != DHT:
            continue
        p = s + 4
        while p < e:
            tc, th = data[p] >> 4, data[p] & 15
            bits = bytes(data[p + 1:p + 17])
            n = sum(bits)
            vals = bytes(data[p + 17:p + 17 + n])
            if len(bits) != 16 or len(vals) != n:
                raise DecodeError("malformed DHT segment")
            tables[(tc, th)] = _lut(bits, vals)
            p += 17 + n
    return tables


@dataclass(frozen=True)
class Layout:
    """What one MCU of a scan contains: ``blocks[j] = (dc_lut, ac_lut)`` per 8x8 block,
    in scan order (4:2:0: Y Y Y Y Cb Cr), and ``n_mcus`` MCUs per image."""

    blocks: tuple
    n_mcus: int
    restart_interval: int


def layout(header: bytes, tables: bytes) -> Layout:
    """Build the :class:`Layout` from a header (SOI .. SOS) and a tables stream."""
    segs, scan_start = segments(header)
    if scan_start < 0:
        raise DecodeError("header has no SOS segment")
    luts = huffman_tables(tables)
    sof = [(s, e) for m, s, e in segs if m == SOF0]
    sos = [(s, e) for m, s, e in segs if m == SOS]
    dri = [(s, e) for m, s, e in segs if m == DRI]
    if len(sof) != 1 or len(sos) != 1:
        raise DecodeError("header needs exactly one SOF0 and one SOS")
    s, _ = sof[0]
    height = int.from_bytes(header[s + 5:s + 7], "big")
    width = int.from_bytes(header[s + 7:s + 9], "big")
    nc = header[s + 9]
    comps = {}
    for c in range(nc):
        cid, hv = header[s + 10 + 3 * c], header[s + 11 + 3 * c]
        comps[cid] = (hv >> 4, hv & 15)
    hmax = max(h for h, _ in comps.values())
    vmax = max(v for _, v in comps.values())
    s, _ = sos[0]
    ns = header[s + 4]
    blocks = []
    for c in range(ns):
        cid, tdta = header[s + 5 + 2 * c], header[s + 6 + 2 * c]
        if cid not in comps:
            raise DecodeError(f"SOS names unknown component {cid}")
        try:
            dc, ac = luts[(0, tdta >> 4)], luts[(1, tdta & 15)]
        except KeyError as e:
            raise DecodeError(f"no Huffman table {e}") from e
        h, v = comps[cid]
        blocks.extend([(dc, ac)] * (h * v))
    mcus = (-(-width // (8 * hmax))) * (-(-height // (8 * vmax)))
    ri = int.from_bytes(header[dri[0][0] + 4:dri[0][0] + 6], "big") if dri else 0
    if ri != 1:
        raise DecodeError(f"restart interval is {ri}, expected 1 MCU")
    return Layout(tuple(blocks), mcus, ri)


def check_mcu(seg: bytes, blocks) -> str | None:
    """Why the entropy-coded bytes of one MCU are invalid, or None if they are valid.

    ``seg`` is the MCU's data between markers, still byte-stuffed, without markers.
    """
    if b"\xff" in seg:
        seg = seg.replace(b"\xff\x00", b"\xff")
    nbits = len(seg) * 8
    total = nbits + _PAD
    val = (int.from_bytes(seg, "big") << _PAD) | ((1 << _PAD) - 1)
    pos = 0
    for j, (dc, ac) in enumerate(blocks):
        e = dc[(val >> (total - pos - 16)) & 0xFFFF]
        if not e:
            return _why(pos, nbits, f"block {j}: bad DC Huffman code")
        pos += e >> 8
        s = e & 0xFF
        if s > 11:
            return f"block {j}: invalid DC category {s}"
        pos += s
        k = 1
        while k < 64:
            if pos > nbits:
                break
            e = ac[(val >> (total - pos - 16)) & 0xFFFF]
            if not e:
                return _why(pos, nbits, f"block {j}: bad AC Huffman code")
            pos += e >> 8
            rs = e & 0xFF
            s = rs & 15
            if s:
                if s > 10:
                    return f"block {j}: invalid AC size {s}"
                k += rs >> 4
                if k > 63:
                    return f"block {j}: coefficient index {k} beyond 63"
                pos += s
                k += 1
            elif rs == 0xF0:
                k += 16
                if k > 64:
                    return f"block {j}: zero run past coefficient 63"
            elif rs == 0:
                break
            else:
                return f"block {j}: invalid AC symbol {rs:#04x}"
        if pos > nbits:
            return "data ends inside the MCU (truncated or bytes missing)"
    rem = nbits - pos
    if rem >= 8:
        return f"{rem // 8} extra byte(s) after the MCU's data"
    if rem and (val >> _PAD) & ((1 << rem) - 1) != (1 << rem) - 1:
        return "padding bits are not all ones"
    return None


def _why(pos: int, nbits: int, msg: str) -> str:
    return "data ends inside the MCU (truncated or bytes missing)" if pos >= nbits else msg


@dataclass
class Report:
    """Outcome of :func:`walk`: ``n_intact`` MCUs from the start are valid and in place;
    ``units`` holds their entropy-coded bytes (stuffed, no markers); ``error`` is None
    only for a complete, valid scan ending in EOI with nothing after it."""

    n_intact: int
    error: str | None
    units: list[bytes] = field(default_factory=list)


def walk(scan: bytes, lay: Layout) -> Report:
    """Check the scan data (everything after the SOS segment) MCU by MCU.

    MCU ``i`` counts as intact when MCUs ``0..i-1`` are intact and correctly
    delimited and its own bytes (up to the next marker or the end of the data)
    decode cleanly. A wrong marker after MCU ``i`` stops the count after ``i``.
    """
    n = lay.n_mcus
    units: list[bytes] = []
    pos = 0
    end_of_data = len(scan)
    for i in range(n):
        m = MARKER.search(scan, pos)
        end = m.start() if m else end_of_data
        seg = scan[pos:end]
        why = check_mcu(seg, lay.blocks)
        if why:
            return Report(i, f"MCU {i}: {why}", units)
        units.append(seg)
        if end >= end_of_data - 1:  # no more data, or only half a marker
            if i + 1 < n:
                return Report(i + 1, f"stream is truncated after MCU {i} ({i + 1} of {n} MCUs)",
                              units)
            return Report(n, "stream is truncated: EOI missing", units)
        b = scan[end + 1]
        want = 0xD0 + i % 8 if i + 1 < n else 0xD9
        if b != want:
            return Report(i + 1, f"after MCU {i}: expected {marker_name(want)}, "
                                 f"found {marker_name(b)}", units)
        pos = end + 2
    if pos != end_of_data:
        return Report(n, f"{end_of_data - pos} extra byte(s) after EOI", units)
    return Report(n, None, units)


def blank_mcu(lay: Layout) -> bytes:
    """The shortest valid MCU: every block DC difference 0 and EOB (mid-grey after a
    restart), padded with one-bits and byte-stuffed."""
    bits = ""
    for dc, ac in lay.blocks:
        for lut, sym in ((dc, 0x00), (ac, 0x00)):
            idx = next(i for i in range(65536) if lut[i] and lut[i] & 0xFF == sym)
            length = lut[idx] >> 8
            bits += format(idx >> (16 - length), f"0{length}b")
    bits += "1" * (-len(bits) % 8)
    raw = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return raw.replace(b"\xff", b"\xff\x00")
