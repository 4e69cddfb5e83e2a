"""The modeled JPEG header: marker segments, the scan layout it implies, Pillow's streams.

The scan grammar enforces the constant header (SOI, APP0, SOF0, DRI, SOS) byte for byte
and reads from it what the entropy-coded scan must look like (:class:`ScanLayout`).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from codeclm.errors import ProfileError

# marker codes (the byte after 0xFF)
SOF0, SOS, DRI, DQT = 0xC0, 0xDA, 0xDD, 0xDB


def marker_segments(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Marker segments up to and including SOS: ``([(marker, payload)], scan_start)``.

    ``scan_start`` is the byte offset just after the SOS segment, -1 if there is none.
    """
    if data[:2] != b"\xff\xd8":
        raise ProfileError("JPEG header does not start with SOI")
    segments, pos = [], 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ProfileError(f"JPEG header: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xD9:
            break
        length = int.from_bytes(data[pos + 2:pos + 4], "big")  # includes its own 2 bytes
        segments.append((marker, data[pos + 4:pos + 2 + length]))
        pos += 2 + length
        if marker == SOS:
            return segments, pos
    return segments, -1


def pillow_streams(width: int, height: int, quality: int = 25, subsampling: int = 2,
                   save_kwargs: dict | None = None) -> tuple[bytes, bytes]:
    """(abbreviated stream of a grey image, tables-only stream) Pillow writes with these
    settings (``save_kwargs`` overrides them; ``streamtype`` is set here)."""
    from PIL import Image

    def save(streamtype: int) -> bytes:
        kw = dict(save_kwargs) if save_kwargs else {
            "quality": quality, "subsampling": subsampling, "restart_marker_blocks": 1,
            "optimize": False, "progressive": False}
        kw["streamtype"] = streamtype
        buf = io.BytesIO()
        Image.new("RGB", (width, height), (128, 128, 128)).save(buf, "JPEG", **kw)
        return buf.getvalue()

    return save(2), save(1)


@dataclass(frozen=True)
class ScanLayout:
    """What the header says about the scan.

    ``blocks[j] = (component index, dc table id, ac table id)`` per 8x8 block of one MCU
    in scan order; ``n_mcus`` MCUs per image; ``dc_bound[c]`` = largest |quantized DC|
    of component ``c`` (``ceil(1024 / q_dc)``). ``header`` is enforced byte for byte
    (``b""``: the grammar starts at the first MCU).
    """

    header: bytes
    width: int
    height: int
    blocks: tuple[tuple[int, int, int], ...]
    n_mcus: int
    dc_bound: tuple[int, ...]


def parse_layout(header: bytes, tables: bytes | None) -> ScanLayout:
    """Parse SOF0/DRI/SOS of ``header`` (and the DQT segments of ``tables``).

    Raises :class:`ProfileError` for anything but one baseline scan of all components
    with a restart marker after every MCU.
    """
    segments, start = marker_segments(header)
    if start != len(header):
        raise ProfileError("header must end exactly after the SOS segment")
    sof = [pay for marker, pay in segments if marker == SOF0]
    sos = [pay for marker, pay in segments if marker == SOS]
    dri = [pay for marker, pay in segments if marker == DRI]
    if len(sof) != 1 or len(sos) != 1:
        raise ProfileError("header needs exactly one SOF0 (baseline) and one SOS")
    if not dri or int.from_bytes(dri[0][:2], "big") != 1:
        raise ProfileError("the scan grammar needs a restart marker after every MCU (DRI 1)")
    frame = sof[0]
    if frame[0] != 8:
        raise ProfileError("only 8-bit samples are supported")
    height, width = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big")
    n_comps = frame[5]
    comps = {}  # component id -> (index, h sampling, v sampling, quantization table id)
    for c in range(n_comps):
        cid, sampling, qtable = frame[6 + 3 * c], frame[7 + 3 * c], frame[8 + 3 * c]
        comps[cid] = (c, sampling >> 4, sampling & 15, qtable)
    hmax = max(h for _, h, _, _ in comps.values())
    vmax = max(v for _, _, v, _ in comps.values())
    scan = sos[0]
    n_scan = scan[0]
    if n_scan != n_comps or scan[1 + 2 * n_scan:4 + 2 * n_scan] != bytes((0, 63, 0)):
        raise ProfileError("the scan must be a single baseline scan of every component")
    blocks = []
    for c in range(n_scan):
        cid, table_ids = scan[1 + 2 * c], scan[2 + 2 * c]
        idx, h, v, _ = comps[cid]
        if idx > 0 and h * v != 1:
            raise ProfileError("only the first component may have several blocks per MCU")
        if table_ids >> 4 > 1 or table_ids & 15 > 1:
            raise ProfileError("unexpected Huffman table id in SOS")
        blocks += [(idx, table_ids >> 4, table_ids & 15)] * (h * v)
    n_mcus = (-(-width // (8 * hmax))) * (-(-height // (8 * vmax)))
    return ScanLayout(header, width, height, tuple(blocks), n_mcus,
                      dc_bounds(comps, dc_quantizers(tables)))


def dc_quantizers(tables: bytes | None) -> dict[int, int]:
    """Quantization table id -> its DC quantizer, from the DQT segments of ``tables``
    (a tables-only stream, with or without SOI)."""
    q_dc: dict[int, int] = {}
    if not tables:
        return q_dc
    body = tables[2:] if tables[:2] == b"\xff\xd8" else tables
    for marker, pay in marker_segments(b"\xff\xd8" + body)[0]:
        if marker != DQT:
            continue
        pos = 0
        while pos < len(pay):
            precision, table_id = pay[pos] >> 4, pay[pos] & 15  # precision 1: 16-bit entries
            q_dc[table_id] = (int.from_bytes(pay[pos + 1:pos + 3], "big") if precision
                              else pay[pos + 1])
            pos += 1 + 64 * (2 if precision else 1)
    return q_dc


def dc_bounds(comps: dict, q_dc: dict[int, int]) -> tuple[int, ...]:
    """Per component (in frame order): the largest |quantized DC| an 8-bit baseline
    encoder can write, ``ceil(1024 / q_dc)``; an unknown quantizer counts as 1 (the
    widest range)."""
    return tuple(min(2047, math.ceil(1024 / q_dc.get(qtable, 1)))
                 for _, (_, _, _, qtable) in sorted(comps.items(), key=lambda kv: kv[1][0]))
