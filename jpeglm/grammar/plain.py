"""The plainest end of an MCU: what :meth:`JpegScanGrammar.finish_early` writes.

Where the model's own draw opens a marker (a restart marker or EOI) before the MCU's
blocks are all coded, the grammar's next allowed bytes would be the model's next
choices, mostly coefficient codes it never meant: the colour blocks of a broken MCU.
:func:`plain_mcu_bytes` instead finishes the MCU with the fewest bits the grammar
allows from there (an A* search over the scan automaton's bit tables): in practice the
current code completed as briefly as it can be, an end-of-block, and every block left
coded as a DC difference of 0 and an end-of-block (a flat block of the running DC
colour), then the 1 bits that pad the MCU to a byte, with 0xFF bytes stuffed.
"""

from __future__ import annotations

import heapq

from ..huffman import AC_CHROMA, AC_LUMA, DC_CHROMA, DC_LUMA
from .automaton import PH_PAD, ScanAutomaton

#: scan states (bit positions) the search expands before it gives up
PLAIN_EXPANSIONS = 4000

_DC_TABLES, _AC_TABLES = (DC_LUMA, DC_CHROMA), (AC_LUMA, AC_CHROMA)


def plain_mcu_bytes(auto: ScanAutomaton, sid: int, k: int, pred: int) -> bytes | None:
    """Entropy-coded bytes that finish the MCU from the byte-aligned scan state ``sid``
    (coefficient index ``k``, luma DC predictor index ``pred``) with the fewest bits,
    padded with 1 bits to a byte boundary, each 0xFF followed by a stuffed 0x00; after
    them only a marker may follow. None when the state is not inside an MCU or the
    search gives up (:data:`PLAIN_EXPANSIONS` states)."""
    if sid <= 0 or sid == auto.pad_state:
        return None
    got = _shortest_bits(auto, sid, k, pred)
    if got is None:
        return None
    value, n = got
    pad = -n % 8
    value, n = (value << pad) | ((1 << pad) - 1), n + pad
    out = bytearray()
    for byte in value.to_bytes(n // 8, "big"):
        out.append(byte)
        if byte == 0xFF:
            out.append(0)
    return bytes(out)


def _shortest_bits(auto: ScanAutomaton, sid: int, k: int, pred: int) -> tuple[int, int] | None:
    """(bits, count) of the shortest path from ``(sid, k, pred)`` to the padding state."""
    rest = _blocks_after(auto)
    states = auto.states
    heap = [(0, 0, 0, 2 * sid, k, pred, 0)]
    seen, pushed = set(), 0
    while heap and len(seen) < PLAIN_EXPANSIONS:
        _, cost, _, s2, kk, pp, value = heapq.heappop(heap)
        if s2 // 2 == auto.pad_state:
            return value, cost
        if (s2, kk, pp) in seen:
            continue
        seen.add((s2, kk, pp))
        for bit in (0, 1):
            nxt = auto.scan_bit(s2, kk, pp, bit)
            if nxt is None:
                continue
            ph, blk = states[nxt[0] // 2][:2]
            est = 0 if ph == PH_PAD else 1 + rest[blk]
            pushed += 1
            heapq.heappush(heap, (cost + 1 + est, cost + 1, pushed, *nxt, value << 1 | bit))
    return None


_REST: dict[int, tuple[int, ...]] = {}


def _blocks_after(auto: ScanAutomaton) -> tuple[int, ...]:
    """Per block of the MCU: the least bits of the blocks after it (each a DC category
    0 code and an end-of-block), the search's estimate."""
    got = _REST.get(id(auto))
    if got is None:
        least = [_DC_TABLES[td].codes()[0][1] + _AC_TABLES[ta].codes()[0x00][1]
                 for _comp, td, ta in auto.blocks]
        got = _REST[id(auto)] = tuple(sum(least[j + 1:]) for j in range(len(least)))
    return got
