"""Valid-by-construction JPEG sampling: an incremental scan grammar that masks BPE tokens.

:class:`JpegScanGrammar` follows a JPEG-LM stream one token at a time and says which
tokens may come next (``allowed_mask()``), so that *every* sampled stream is a complete
baseline JPEG of the profile's size, shaped like the canonical encoder's output:

* the constant header (SOI, APP0, SOF0, DRI, SOS) byte for byte;
* per MCU, every 8x8 block in scan order (4:2:0: Y Y Y Y Cb Cr): a DC category code
  of the standard (T.81 Annex K.3) tables plus its extra bits, then AC run/size codes
  plus extra bits; at most 63 AC coefficients; EOB only while fewer than 63 are
  used; ZRL only when a non-zero coefficient still fits after it, and never directly
  before EOB (libjpeg never writes either);
* every decoded DC coefficient within what an 8-bit baseline encoder can produce,
  ``|DC| <= ceil(1024 / q_dc)`` (q_dc from the profile's quantization tables; 32 for
  luma and 31 for chroma at quality 25). The luma DC predictor chains through the
  MCU's Y blocks and is reset by every restart marker. libjpeg accepts other values
  without a word (slightly too large ones saturate pixels, far too large ones wrap
  around in its range limiting), so this is a plausibility rule, not a syntax rule;
* byte stuffing (``FF`` inside entropy-coded data is followed by ``00``), one-bits
  padding each MCU to a byte boundary, ``RST(i mod 8)`` after MCU ``i``, EOI after
  the last MCU, then only EOS.

A token is allowed iff *all* its bytes continue a valid stream. Dead ends are pruned
bit by bit (a Huffman prefix is allowed only if some code below it still fits), so
every reachable state can be completed: with all 256 single bytes in the vocabulary
masked sampling can never get stuck.

How it is fast
--------------
The bit-level automaton (:class:`ScanAutomaton`) has a few thousand *k-free* states
(block, phase, position in the current Huffman code or extra bits, ZRL flag); the
coefficient index ``k``, the luma DC predictor and the MCU index travel beside it.
Each (state, bit) transition is a row of small integer tables: next state, the
largest ``k`` it allows, how it changes ``k``, which predictor values it allows and how
it changes the predictor. Running all (state, byte) pairs through them as numpy lanes
with ``k`` kept symbolic gives *byte tables* (valid iff ``k0 <= threshold``, then
``k = k0 * mul + add``, plus the one ``k0`` at which the byte ends the block at
coefficient 63); continuing the lanes along the vocabulary's byte trie gives the same
for whole tokens: *token tables*, row ``state * V + token`` (about a second, once per
vocabulary; the automaton is shared by vocabularies).

At a token boundary the grammar state is ``(core, pred, mcu)`` with ``core = (state,
k, ff)`` (``ff``: a stuffed zero byte is due). The mask of a core is one vectorized
read of its token-table row block (``threshold >= k``); tokens whose validity depends
on the predictor carry an interned bitset of allowed predictors and get a per-predictor
row on demand. The entry is valid for the whole k interval between neighbouring
thresholds, so one entry serves many ``k``. Cores at markers, the header or a pending
stuffed zero walk the vocabulary trie instead. Entries are cached in a
:class:`CompiledScanGrammar` shared by every grammar with the same layout and
vocabulary (batch rows, successive generations): a cached ``allowed_mask()`` is a dict
lookup, ``advance()`` a few table reads.
"""

from __future__ import annotations

import bisect
import io
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from codeclm.errors import CodecLMError, ProfileError, TokenizerError

from .huffman import AC_CHROMA, AC_LUMA, DC_CHROMA, DC_LUMA, INVALID, HuffmanTrie

# Phases of a bit-level (k-free) state (ph, blk, zrl, x) -------------------------------
PH_DC, PH_DCX, PH_AC, PH_ACX, PH_PAD = range(5)
# Byte-boundary cores (sid, k, ff) use sid > 0 for scan states and these for the rest
S_MARK, S_END, S_FIN = -1, -2, -3   # FF of a marker written / EOI written / EOS emitted
S_HDR = -100                         # header byte ``pos`` is due: sid = S_HDR - pos

#: a ZRL needs k + 16 <= 63 (so that a non-zero coefficient still fits after it)
K_SAFE = 47
_NO_LIMIT = 127
#: trie depths with at most this many live prefixes are finished lane by lane in Python
_SCALAR_LANES = 16

_SOF0, _SOS, _DRI, _DQT = 0xC0, 0xDA, 0xDD, 0xDB


class GrammarError(CodecLMError, ValueError):
    """A token or byte that the JPEG scan grammar does not allow at this point."""


# ----------------------------------------------------------------------------- header
def _segments(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Marker segments up to and including SOS: ([(marker, payload)], scan_start)."""
    if data[:2] != b"\xff\xd8":
        raise ProfileError("JPEG header does not start with SOI")
    out, i = [], 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ProfileError(f"JPEG header: expected a marker at byte {i}")
        m = data[i + 1]
        if m == 0xD9:
            break
        n = int.from_bytes(data[i + 2:i + 4], "big")
        out.append((m, data[i + 4:i + 2 + n]))
        i += 2 + n
        if m == _SOS:
            return out, i
    return out, -1


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
    segs, start = _segments(header)
    if start != len(header):
        raise ProfileError("header must end exactly after the SOS segment")
    sof = [p for m, p in segs if m == _SOF0]
    sos = [p for m, p in segs if m == _SOS]
    dri = [p for m, p in segs if m == _DRI]
    if len(sof) != 1 or len(sos) != 1:
        raise ProfileError("header needs exactly one SOF0 (baseline) and one SOS")
    if not dri or int.from_bytes(dri[0][:2], "big") != 1:
        raise ProfileError("the scan grammar needs a restart marker after every MCU (DRI 1)")
    p = sof[0]
    if p[0] != 8:
        raise ProfileError("only 8-bit samples are supported")
    height, width, nc = int.from_bytes(p[1:3], "big"), int.from_bytes(p[3:5], "big"), p[5]
    comps = {}
    for c in range(nc):
        cid, hv, tq = p[6 + 3 * c], p[7 + 3 * c], p[8 + 3 * c]
        comps[cid] = (c, hv >> 4, hv & 15, tq)
    hmax = max(h for _, h, _, _ in comps.values())
    vmax = max(v for _, _, v, _ in comps.values())
    q = sos[0]
    ns = q[0]
    if ns != nc or q[1 + 2 * ns:4 + 2 * ns] != bytes((0, 63, 0)):
        raise ProfileError("the scan must be a single baseline scan of every component")
    blocks = []
    for c in range(ns):
        cid, tdta = q[1 + 2 * c], q[2 + 2 * c]
        idx, h, v, _ = comps[cid]
        if idx > 0 and h * v != 1:
            raise ProfileError("only the first component may have several blocks per MCU")
        if tdta >> 4 > 1 or tdta & 15 > 1:
            raise ProfileError("unexpected Huffman table id in SOS")
        blocks += [(idx, tdta >> 4, tdta & 15)] * (h * v)
    n_mcus = (-(-width // (8 * hmax))) * (-(-height // (8 * vmax)))
    qdc = {}
    if tables:
        body = tables[2:] if tables[:2] == b"\xff\xd8" else tables
        for m, pay in _segments(b"\xff\xd8" + body)[0]:
            if m == _DQT:
                j = 0
                while j < len(pay):
                    pq, tq = pay[j] >> 4, pay[j] & 15
                    qdc[tq] = int.from_bytes(pay[j + 1:j + 3], "big") if pq else pay[j + 1]
                    j += 1 + 64 * (2 if pq else 1)
    bound = []
    for _, (idx, _, _, tq) in sorted(comps.items(), key=lambda kv: kv[1][0]):
        # unknown quantizer: 1, i.e. the widest range an 8-bit baseline DC can have
        bound.append(min(2047, math.ceil(1024 / qdc.get(tq, 1))))
    return ScanLayout(header, width, height, tuple(blocks), n_mcus, tuple(bound))


# ------------------------------------------------------------------------ automaton
class ScanAutomaton:
    """Bit- and byte-level transition tables of the entropy-coded scan for one layout.

    Independent of the vocabulary (shared through :func:`scan_automaton`).

    *Bit tables* (index ``2 * state + bit``): ``NXT2`` (2 * next state; 0 = dead), ``KMX``
    (valid iff ``k <= KMX``), ``KMUL``/``KADD`` (``k = k * KMUL + KADD``), ``E64``/``ALT2``
    (the extra bits of coefficient 63 just ended: if ``k == 64`` the block ends, next
    state ``ALT2``, ``k = 0``), ``PCK`` (predictor check: index into ``CPT_int``, a
    bitset over the current predictor index; 0 = none), ``PUM``/``PUV`` (predictor
    update: 1 shift by PUV, 2 set to index PUV).

    *Byte tables* (index ``256 * state + byte``, one whole entropy-coded byte from a
    byte-aligned state): with ``k0`` the k before the byte, the byte is valid iff
    ``k0 <= THRB`` (for states in the DC phase k0 is 0 and THRB is 127 or -1); then the
    state is ``NXTB``, ``k = k0 * MULB + ADDB`` (MULB 0 once the block ended), the
    allowed *byte-start* predictors are the bitset ``kbits[KIDB]`` and the predictor
    update is ``UMB``/``UVB``. If the byte completes coefficient 63 of the block for
    exactly ``k0 == ALTK[row, j]`` (j < 3), the outcome is entry ``ALTI[row, j]`` of the
    ``ALT_*`` arrays instead (:meth:`alt`).
    """

    def __init__(self, blocks: tuple, dc_bound: tuple):
        self.blocks = blocks
        self.nblocks = len(blocks)
        self.dc_bound = dc_bound
        self.B = dc_bound[0]                 # luma bound; predictor index p = pred + B
        self.NP = 2 * self.B + 1
        self.FULLP = (1 << self.NP) - 1
        self._dcx: dict = {}
        self._setup_blocks()
        self._build_bit_tables()
        self.kbits: list[int] = [self.FULLP]  # byte-level predictor constraints (id 0: all)
        self._kid: dict = {self.FULLP: 0}
        self._krows = _bits_matrix(self.kbits, self.NP)
        self._kcols = None
        self._alloc_byte_tables()
        self.build_all()
        for name, dt in (("THRB", np.int8), ("NXTB", np.int16), ("MULB", np.int8),
                         ("ADDB", np.int8), ("KIDB", np.int32), ("UMB", np.int8),
                         ("UVB", np.int16), ("ALTK", np.int8), ("ALTI", np.int32)):
            setattr(self, name, _narrow(getattr(self, name), dt))
        del self._nalt
        # scalar views (fast element access as Python ints)
        self.mTHR, self.mNXT, self.mMUL, self.mADD = (memoryview(x) for x in (
            self.THRB, self.NXTB, self.MULB, self.ADDB))
        self.mKID, self.mUM, self.mUV = (memoryview(x) for x in (self.KIDB, self.UMB, self.UVB))
        self.mALTK = memoryview(self.ALTK.reshape(-1))

    # -- per-block setup -----------------------------------------------------------
    def _setup_blocks(self) -> None:
        tries = {("dc", 0): HuffmanTrie.build(DC_LUMA), ("dc", 1): HuffmanTrie.build(DC_CHROMA),
                 ("ac", 0): HuffmanTrie.build(AC_LUMA), ("ac", 1): HuffmanTrie.build(AC_CHROMA)}
        blocks = self.blocks
        self._blk_dc, self._blk_ac, self._blk_acinfo = [], [], []
        self._blk_mode, self._blk_bound, self._blk_dclive = [], [], []
        for j, (comp, td, ta) in enumerate(blocks):
            dct, act = tries[("dc", td)], tries[("ac", ta)]
            self._blk_dc.append(dct.child)
            self._blk_ac.append(act.child)
            info = []
            for syms in act.symbols:
                runs = [s >> 4 for s in syms if s & 15]
                info.append((0x00 in syms, 0xF0 in syms, min(runs) if runs else 99))
            self._blk_acinfo.append(info)
            # DC mode: 0 = predictor 0 and irrelevant (single block of a chroma
            # component), 1 = first luma block (pred 0, sets pred), 2 = chained luma block
            first = all(blocks[i][0] != comp for i in range(j))
            self._blk_mode.append((1 if first else 2) if comp == 0 else 0)
            self._blk_bound.append(self.dc_bound[comp])
        for j in range(len(blocks)):
            dct = tries[("dc", blocks[j][1])]
            self._blk_dclive.append([self._dc_live(j, dct.symbols[n])
                                     for n in range(len(dct.child))])

    def _bitset(self, blk: int, ok) -> int:
        """Bitset over predictor indices of the preds for which ``ok(pred)``; for blocks
        whose predictor is known to be 0: FULLP or 0."""
        if self._blk_mode[blk] != 2:
            return self.FULLP if ok(0) else 0
        out = 0
        for pred in range(-self.B, self.B + 1):
            if ok(pred):
                out |= 1 << (pred + self.B)
        return out

    def _dc_live(self, blk: int, cats: Iterable[int]) -> int:
        """Predictors for which some DC category in ``cats`` can still give a DC in range."""
        bound = self._blk_bound[blk]
        cats = list(cats)

        def ok(pred: int) -> bool:
            for c in cats:
                if c == 0:
                    return True
                if c > 11:
                    continue
                lo, hi = 1 << (c - 1), (1 << c) - 1
                if (max(lo, -bound - pred) <= min(hi, bound - pred)
                        or max(-hi, -bound - pred) <= min(-lo, bound - pred)):
                    return True
            return False

        return self._bitset(blk, ok)

    def _dcx_set(self, blk: int, s: int, nleft: int, prefix: int) -> int:
        """Predictors for which a DC of category ``s`` whose extra bits start with
        ``prefix`` (``nleft`` more to come) can still land in range."""
        key = (blk, s, nleft, prefix)
        r = self._dcx.get(key)
        if r is None:
            bound = self._blk_bound[blk]
            vlo, vhi = prefix << nleft, ((prefix + 1) << nleft) - 1
            half = 1 << (s - 1)
            ivs = []  # reachable DC differences as intervals
            if vhi >= half:
                ivs.append((max(vlo, half), vhi))
            if vlo < half:
                ivs.append((vlo - (2 * half - 1), min(vhi, half - 1) - (2 * half - 1)))
            r = self._bitset(blk, lambda pred: any(
                max(a, -bound - pred) <= min(b, bound - pred) for a, b in ivs))
            self._dcx[key] = r
        return r

    def _block_end(self, blk: int) -> tuple:
        return (PH_PAD, -1, 0, 0) if blk + 1 == self.nblocks else (PH_DC, blk + 1, 0, 0)

    def _trans(self, st: tuple, bit: int):
        """One bit from k-free state ``st``: None (never valid) or
        ``(next, kmax, kmul, kadd, end64, alt, pcheck, pmode, pval)`` (see the class doc;
        ``pcheck`` is a bitset or None)."""
        ph, blk, zrl, x = st
        B, FULLP = self.B, self.FULLP
        if ph == PH_PAD:
            return (st, _NO_LIMIT, 1, 0, False, None, None, 0, 0) if bit else None
        if ph == PH_DC:
            c = self._blk_dc[blk][x][bit]
            if c == INVALID:
                return None
            mode = self._blk_mode[blk]
            if c >= 0:
                live = self._blk_dclive[blk][c]
                if not live:
                    return None
                return ((PH_DC, blk, 0, c), _NO_LIMIT, 1, 0, False, None,
                        None if live == FULLP else live, 0, 0)
            cat = -1 - c
            if cat == 0:  # a zero difference keeps an in-range predictor in range
                return ((PH_AC, blk, 0, 0), _NO_LIMIT, 0, 1, False, None, None,
                        2 if mode == 1 else 0, B)
            live = self._dcx_set(blk, cat, cat, 0)
            if not live:
                return None
            return ((PH_DCX, blk, 0, cat | (cat << 4)), _NO_LIMIT, 1, 0, False, None,
                    None if live == FULLP else live, 0, 0)
        if ph == PH_DCX:
            cat, nleft, prefix = x & 15, (x >> 4) & 15, x >> 8
            prefix = prefix * 2 + bit
            nleft -= 1
            live = self._dcx_set(blk, cat, nleft, prefix)
            if not live:
                return None
            cp = None if live == FULLP else live
            if nleft:
                return ((PH_DCX, blk, 0, cat | (nleft << 4) | (prefix << 8)), _NO_LIMIT, 1, 0,
                        False, None, cp, 0, 0)
            diff = prefix if prefix >> (cat - 1) else prefix - ((1 << cat) - 1)
            mode = self._blk_mode[blk]
            pm, pv = (2, diff + B) if mode == 1 else (1, diff) if mode == 2 else (0, 0)
            return ((PH_AC, blk, 0, 0), _NO_LIMIT, 0, 1, False, None, cp, pm, pv)
        if ph == PH_AC:
            c = self._blk_ac[blk][x][bit]
            if c == INVALID:
                return None
            if c >= 0:
                eob, zr, minrun = self._blk_acinfo[blk][c]
                if eob and not zrl:
                    kmax = _NO_LIMIT
                else:
                    kmax = max(K_SAFE if zr else -1, 63 - minrun if minrun <= 15 else -1)
                if kmax < 1:
                    return None
                return ((PH_AC, blk, zrl, c), kmax, 1, 0, False, None, None, 0, 0)
            sym = -1 - c
            run, size = sym >> 4, sym & 15
            if size == 0:
                if run == 0:  # EOB
                    return None if zrl else (self._block_end(blk), _NO_LIMIT, 0, 0, False,
                                             None, None, 0, 0)
                if run == 15:  # ZRL: a non-zero coefficient must still fit after it
                    return ((PH_AC, blk, 1, 0), K_SAFE, 1, 16, False, None, None, 0, 0)
                return None
            return ((PH_ACX, blk, 0, size), 63 - run, 1, run + 1, False, None, None, 0, 0)
        # PH_ACX: extra bits of an AC coefficient; k already points past it
        if x > 1:
            return ((PH_ACX, blk, 0, x - 1), _NO_LIMIT, 1, 0, False, None, None, 0, 0)
        return ((PH_AC, blk, 0, 0), _NO_LIMIT, 1, 0, True, self._block_end(blk), None, 0, 0)

    def _build_bit_tables(self) -> None:
        """Enumerate the reachable k-free states and fill the per-(state, bit) tables."""
        states: list = [None]  # id 0: dead sink
        index: dict = {}

        def sid_of(st: tuple) -> int:
            i = index.get(st)
            if i is None:
                i = index[st] = len(states)
                states.append(st)
            return i

        for blk in range(self.nblocks):
            sid_of((PH_DC, blk, 0, 0))
        self.PAD = sid_of((PH_PAD, -1, 0, 0))
        self.DC0 = index[(PH_DC, 0, 0, 0)]
        rows: list = [None, None]
        q = 1
        while q < len(states):
            st = states[q]
            for bit in (0, 1):
                t = self._trans(st, bit)
                if t is not None:
                    alt = sid_of(t[5]) if t[5] is not None else 0
                    t = (sid_of(t[0]),) + t[1:5] + (alt,) + t[6:]
                rows.append(t)
            q += 1
        n = len(states)
        self.states, self.n_states = states, n
        cpt_index: dict = {self.FULLP: 0}
        cpt: list = [self.FULLP]
        cols = [np.zeros(2 * n, np.int64) for _ in range(9)]
        NXT2, KMX, KMUL, KADD, E64, ALT2, PCK, PUM, PUV = cols
        KMX[:] = -1
        KMUL[:] = 1
        for i, t in enumerate(rows):
            if t is None:
                continue
            nxt, kmax, kmul, kadd, e64, alt, cp, pm, pv = t
            NXT2[i], KMX[i], KMUL[i], KADD[i] = 2 * nxt, kmax, kmul, kadd
            E64[i], ALT2[i], PUM[i], PUV[i] = e64, 2 * alt, pm, pv
            if cp is not None:
                if cp not in cpt_index:
                    cpt_index[cp] = len(cpt)
                    cpt.append(cp)
                PCK[i] = cpt_index[cp]
        E64 = E64.astype(bool)
        self.NXT2, self.KMX, self.KMUL, self.KADD = NXT2, KMX, KMUL, KADD
        self.E64, self.ALT2, self.PCK, self.PUM, self.PUV = E64, ALT2, PCK, PUM, PUV
        self.FL = (KMUL != 1) | (KADD != 0) | E64 | (PCK != 0) | (PUM != 0)
        self.KMX32, self.NXT32 = KMX.astype(np.int32), NXT2.astype(np.int32)
        self.KADD32, self.PUV32 = KADD.astype(np.int32), PUV.astype(np.int32)
        self.CPT_int = cpt
        self.PH = np.array([-1] + [s[0] for s in states[1:]], np.int64)
        self.IS_AC = (self.PH == PH_AC) | (self.PH == PH_ACX)
        # plain lists for the scalar path
        self._l = tuple(a.tolist() for a in (NXT2, KMX, KMUL, KADD, E64, ALT2, PCK, PUM, PUV,
                                             self.FL))

    # -- byte tables -----------------------------------------------------------------
    def _kid_of(self, bits: int) -> int:
        i = self._kid.get(bits)
        if i is None:
            i = self._kid[bits] = len(self.kbits)
            self.kbits.append(bits)
        return i

    @property
    def KROWS(self) -> np.ndarray:
        """Bool matrix [n_constraints, NP] of the interned predictor bitsets."""
        if len(self._krows) < len(self.kbits):
            self._krows = np.concatenate(
                [self._krows, _bits_matrix(self.kbits[len(self._krows):], self.NP)])
            self._kcols = None
        return self._krows

    @property
    def KCOLS(self) -> np.ndarray:
        """``KROWS`` transposed and contiguous: ``KCOLS[p][kid]``."""
        rows = self.KROWS
        if self._kcols is None:
            self._kcols = np.ascontiguousarray(rows.T)
        return self._kcols

    def _alloc_byte_tables(self) -> None:
        rows = self.n_states * 256
        self.NXTB = np.zeros(rows, np.int64)
        self.THRB = np.full(rows, -1, np.int64)
        self.MULB = np.zeros(rows, np.int64)
        self.ADDB = np.zeros(rows, np.int64)
        self.KIDB = np.zeros(rows, np.int64)
        self.UMB = np.zeros(rows, np.int64)
        self.UVB = np.zeros(rows, np.int64)
        # block ends at coefficient 63 for one k0: ALTK[row, j] = that k0 (-1: none),
        # ALTI[row, j] = index into the ALT_* outcome arrays
        self.ALTK = np.full((rows, 3), -1, np.int64)
        self.ALTI = np.zeros((rows, 3), np.int64)
        self._nalt = np.zeros(rows, np.int8)
        self.ALT_N = self.ALT_ADD = self.ALT_KID = self.ALT_UM = self.ALT_UV = np.zeros(0,
                                                                                        np.int64)

    def build_all(self, chunk: int = 1024) -> None:
        """Build every state's byte tables (done at construction: about half a second)."""
        t0 = time.perf_counter()
        sids = np.array([s for s in range(1, self.n_states) if s != self.PAD], np.int64)
        for c0 in range(0, len(sids), chunk):
            self._byte_chunk(sids[c0:c0 + chunk])
        self.tables_seconds = time.perf_counter() - t0

    def _byte_chunk(self, sids: np.ndarray) -> None:
        """Run every byte from every state in ``sids`` through the bit tables, one numpy
        lane per (state, byte), with k symbolic: ``k = k0 * mul + add``."""
        i32 = np.int32
        row = (sids[:, None].astype(i32) * 256 + np.arange(256, dtype=i32)[None, :]).ravel()
        n = len(row)
        is_ac = self.IS_AC[row >> 8]
        st = {"row": row, "byte": row & 255, "s2": 2 * (row >> 8),
              "kfix": np.where(is_ac, -1, 0).astype(i32),  # DC-phase states: k0 is 0
              "rel": is_ac.copy(),                           # k = k0 + add, k0 unknown
              "mul": np.ones(n, i32), "add": np.zeros(n, i32),
              "thr": np.full(n, _NO_LIMIT, i32), "alive": np.ones(n, bool),
              "kid": np.zeros(n, np.int64), "um": np.zeros(n, i32), "uv": np.zeros(n, i32)}
        forks: list = []
        st = self._run_bits(st, 7, forks)
        r, live = st["row"], st["alive"]
        self.NXTB[r] = np.where(live, st["s2"] // 2, 0)
        self.THRB[r] = np.where(live, st["thr"], -1)
        self.MULB[r] = st["mul"]
        self.ADDB[r] = st["add"]
        self.KIDB[r] = st["kid"]
        self.UMB[r] = st["um"]
        self.UVB[r] = st["uv"]
        for j, f in forks:
            slot = self._nalt[f["row"]].astype(np.int64)
            if np.count_nonzero(slot >= 3):
                raise AssertionError("more than 3 block ends at coefficient 63 in one byte")
            self._nalt[f["row"]] += 1
            f["slot"] = slot
            if j > 0:
                f = self._run_bits(f, j - 1, None)
            f = {k: v[f["alive"]] for k, v in f.items()}
            base = len(self.ALT_N)
            self.ALTK[f["row"], f["slot"]] = f["kfix"]
            self.ALTI[f["row"], f["slot"]] = base + np.arange(len(f["row"]))
            self.ALT_N = np.concatenate([self.ALT_N, f["s2"] // 2])
            self.ALT_ADD = np.concatenate([self.ALT_ADD, f["add"]])
            self.ALT_KID = np.concatenate([self.ALT_KID, f["kid"]])
            self.ALT_UM = np.concatenate([self.ALT_UM, f["um"]])
            self.ALT_UV = np.concatenate([self.ALT_UV, f["uv"]])

    def _run_bits(self, st: dict, jstart: int, forks: list | None) -> dict:
        """Bits ``jstart .. 0`` of every lane's byte (in place where possible). Relative
        lanes that finish coefficient 63 for exactly one k0 spawn a fork lane (appended
        to ``forks`` as ``(bit, lanes)``; forks are absolute and never fork again)."""
        KMX, NXT2, FL = self.KMX32, self.NXT32, self.FL
        for j in range(jstart, -1, -1):
            s2, add, thr, rel, alive = st["s2"], st["add"], st["thr"], st["rel"], st["alive"]
            t = s2 + ((st["byte"] >> j) & 1)
            m = KMX[t] - add
            np.minimum(thr, m, out=thr, where=rel)
            alive &= np.where(rel, thr >= 1, m >= 0)
            nxt = NXT2[t]
            sel = np.flatnonzero(FL[t] & alive)
            if len(sel):
                tt = t[sel]
                mul = st["mul"]
                e = self.E64[tt]
                if np.count_nonzero(e):
                    es = sel[e]
                    rl = rel[es]
                    ab = es[~rl]                       # k known: the branch is decided
                    take = ab[(add[ab] + st["kfix"][ab] * mul[ab]) == 64]
                    nxt[take] = self.ALT2[t[take]]
                    mul[take] = 0
                    add[take] = 0
                    rs = es[rl]                         # k = k0 + add: fork at k0 = 64 - add
                    p = 64 - add[rs]
                    can = (p <= thr[rs]) & (p >= 1)
                    if forks is not None and np.count_nonzero(can):
                        src = rs[can]
                        f = {k: v[src] for k, v in st.items()}
                        f.update(s2=self.ALT2[t[src]].astype(np.int32),
                                 kfix=p[can].astype(np.int32), rel=np.zeros(len(src), bool),
                                 mul=np.zeros(len(src), np.int32),
                                 add=np.zeros(len(src), np.int32),
                                 thr=np.full(len(src), _NO_LIMIT, np.int32))
                        forks.append((j, f))
                    thr[rs] = np.minimum(thr[rs], 63 - add[rs])
                    alive[rs] &= thr[rs] >= 1
                zero = self.KMUL[tt] == 0
                if np.count_nonzero(zero):
                    z = sel[zero]
                    mul[z] = 0
                    add[z] = 0
                    rel[z] = False
                add[sel] += self.KADD32[tt]
                pc = self.PCK[tt]
                if np.count_nonzero(pc):
                    w = sel[pc != 0]
                    self._compose_checks(w, pc[pc != 0], st["kid"], st["um"], st["uv"], alive)
                pm = self.PUM[tt]
                if np.count_nonzero(pm):
                    um, uv = st["um"], st["uv"]
                    w = np.flatnonzero(pm)
                    lanes, mode, val = sel[w], pm[w], self.PUV32[tt[w]]
                    setl = mode == 2
                    um[lanes[setl]] = 2
                    uv[lanes[setl]] = val[setl]
                    shl = lanes[~setl]
                    uv[shl] += val[~setl]
                    um[shl] = np.where(um[shl] == 0, 1, um[shl])
            st["s2"] = nxt
            if j in (5, 2):  # drop dead lanes; their rows keep the default (invalid)
                nlive = np.count_nonzero(alive)
                if nlive < 0.8 * len(alive):
                    keep = np.flatnonzero(alive)
                    st = {k: v[keep] for k, v in st.items()}
        return st

    def alt(self, row: int, j: int) -> tuple[int, int, int, int, int]:
        """(state, k, kid, pred mode, pred value) after byte-table row ``row`` when it
        ends the block at coefficient 63 (the k0 == ALTK[row, j] case)."""
        i = int(self.ALTI[row, j])
        return (int(self.ALT_N[i]), int(self.ALT_ADD[i]), int(self.ALT_KID[i]),
                int(self.ALT_UM[i]), int(self.ALT_UV[i]))

    def _compose_checks(self, w, cps, kid, um, uv, alive) -> None:
        """Lanes ``w`` meet predictor checks ``cps`` (CPT ids over the *current*
        predictor): intersect their byte-start constraint ``kid`` (in place)."""
        keys = np.stack([kid[w], um[w], uv[w], cps], 1)
        key = ((keys[:, 0] * 4 + keys[:, 1]) * 4096 + keys[:, 2] + 2048) * 65536 + keys[:, 3]
        _, first, inv = np.unique(key, return_index=True, return_inverse=True)
        uniq = keys[first]
        new = np.empty(len(uniq), np.int64)
        for i, (k, m, v, cp) in enumerate(uniq.tolist()):
            bits = self.kbits[k] & _pre(m, v, self.CPT_int[cp], self.FULLP)
            new[i] = self._kid_of(bits) if bits else -1
        res = new[inv.ravel()]
        alive[w] &= res >= 0
        kid[w] = np.maximum(res, 0)

    # -- scalar path ---------------------------------------------------------------
    def scan_byte(self, sid: int, k: int, p: int, b: int):
        """One entropy-coded byte from byte-aligned scan state ``sid`` with concrete
        ``k`` and predictor index ``p``: ``(sid', k', p')`` or None."""
        NXT2, KMX, KMUL, KADD, E64, ALT2, PCK, PUM, PUV, FL = self._l
        s2 = 2 * sid
        for j in range(7, -1, -1):
            t = s2 + ((b >> j) & 1)
            if k > KMX[t]:
                return None
            s2 = NXT2[t]
            if FL[t]:
                if E64[t] and k == 64:
                    s2, k = ALT2[t], 0
                else:
                    k = k * KMUL[t] + KADD[t]
                c = PCK[t]
                if c and not (self.CPT_int[c] >> p) & 1:
                    return None
                if PUM[t] == 1:
                    p += PUV[t]
                elif PUM[t] == 2:
                    p = PUV[t]
        return (s2 // 2, k, p) if s2 else None


def _pre(m: int, v: int, cp: int, full: int) -> int:
    """Starting predictor indices p whose image under the update (m, v) is in ``cp``:
    m 0 identity, 1 shift by v, 2 set to v."""
    if m == 0:
        return cp
    if m == 2:
        return full if (cp >> v) & 1 else 0
    return ((cp >> v) if v >= 0 else (cp << -v)) & full


_AUTOMATA: dict = {}
_TOKEN_TABLES: dict = {}


def scan_automaton(layout: ScanLayout) -> ScanAutomaton:
    """The shared :class:`ScanAutomaton` for a layout's blocks and DC bounds."""
    key = (layout.blocks, layout.dc_bound)
    a = _AUTOMATA.get(key)
    if a is None:
        a = _AUTOMATA[key] = ScanAutomaton(*key)
    return a


# -------------------------------------------------------------------------- entries
@dataclass(slots=True)
class _Entry:
    """The mask and every token's transition from one core ``(sid, k0, ff)``.

    ``base`` marks tokens valid for every predictor and MCU class. Tokens valid only
    for some are ``dep_ids``: their allowed starting predictors are the interned bitset
    ``dep_kid`` (row of the automaton's ``KROWS``) and, if ``dep_kc`` is set, their MCU
    classes the bool rows of ``dep_kc``. The entry serves every k in ``[klo, khi]``.

    Transitions: ``by_token`` entries read them from the token tables of state ``sid0``
    (``alt``: tokens that end the block at coefficient 63 here; ``extra``: tokens walked
    byte by byte); the others from their trie ``lanes`` (one :class:`_Lanes` per depth).
    """

    k0: int
    klo: int
    khi: int
    base: torch.Tensor | None
    lanes: list
    eos_only: bool = False
    by_token: bool = False
    sid0: int = 0
    track: bool = False       # AC core: k of same-block tokens is relative
    alt: dict | None = None
    extra: dict | None = None
    dep_ids: np.ndarray | None = None
    dep_kid: np.ndarray | None = None
    dep_kc: np.ndarray | None = None
    biases: dict | None = None
    rows: dict | None = None
    recs: dict | None = None


@dataclass
class _Level:
    """Depth ``d`` of the vocabulary's byte trie: one lane per distinct d-byte prefix
    (depth 1: lane ``b`` is byte ``b``)."""

    byte: np.ndarray       # [n] last byte of the prefix
    parent: np.ndarray     # [n] lane of the (d-1)-byte prefix at the previous level
    tok_ids: np.ndarray    # tokens that end at this depth
    tok_lane: np.ndarray   # ... and their lanes


@dataclass
class _Lanes:
    """Per-lane state while a core's entry is built (one lane per trie prefix)."""

    sid: np.ndarray
    k: np.ndarray
    rel: np.ndarray          # k is still k0 + offset (same AC block as the core)
    ff: np.ndarray
    ok: np.ndarray
    um: np.ndarray
    uv: np.ndarray
    K: np.ndarray | None     # [n, NP] allowed starting predictor indices (None: all)
    dj: np.ndarray
    kc: dict                 # lane -> allowed MCU classes (absent: all)

    @classmethod
    def start(cls, n: int, sid: int, k: int, ff: int, rel: bool) -> _Lanes:
        z = np.zeros(n, np.int64)
        return cls(np.full(n, sid, np.int64), np.full(n, k, np.int64), np.full(n, rel),
                   np.full(n, ff, np.int64), np.ones(n, bool), z, z.copy(), None, z.copy(), {})

    def gather(self, parent: np.ndarray) -> _Lanes:
        kc = {}
        if self.kc:
            for c, p in enumerate(parent.tolist()):
                if p in self.kc:
                    kc[c] = self.kc[p]
        return _Lanes(self.sid[parent], self.k[parent], self.rel[parent], self.ff[parent],
                      self.ok[parent], self.um[parent], self.uv[parent],
                      None if self.K is None else self.K[parent], self.dj[parent], kc)


class CompiledScanGrammar:
    """A layout's :class:`ScanAutomaton` joined with one vocabulary, plus the caches.

    Shared by all :class:`JpegScanGrammar` instances built for the same layout,
    vocabulary and EOS id (see :func:`compile_grammar`). ``cache_info()`` reports mask
    calls, entries built (cache misses), distinct cores seen and build time.
    """

    def __init__(self, layout: ScanLayout, vocab: Sequence[bytes | None], eos_id: int,
                 max_entries: int = 200_000):
        self.layout = layout
        self.vocab = [None if v is None else bytes(v) for v in vocab]
        self.V = len(self.vocab)
        if not 0 <= eos_id < self.V:
            raise TokenizerError(f"eos_id {eos_id} is outside the vocabulary of {self.V}")
        self.eos_id = eos_id
        singles = {v for i, v in enumerate(self.vocab) if v is not None and len(v) == 1
                   and i != eos_id}
        if len(singles) < 256:
            raise TokenizerError(f"the vocabulary lacks {256 - len(singles)} of the 256 single "
                                 "bytes; the grammar needs all of them to never dead-end")
        self.a = scan_automaton(layout)
        self.header = layout.header
        self.n_mcus = layout.n_mcus
        self.B, self.NP, self.FULLP = self.a.B, self.a.NP, self.a.FULLP
        self.PAD, self.DC0 = self.a.PAD, self.a.DC0
        self.max_entries = max_entries
        maxlen = max(len(v) for v in self.vocab if v)
        self.R = maxlen + 1                  # MCU class: (i % 8) + 8 * min(n-1-i, R)
        self.NC = 8 * (self.R + 1)
        self.FULLC = (1 << self.NC) - 1
        self._preC: dict = {}
        self._build_levels()
        self._build_token_tables()
        self._hdr = np.frombuffer(self.header, np.uint8).astype(np.int64)
        self.start_core = (S_HDR, 0, 0) if self.header else (self.DC0, 0, 0)
        self._entries: dict = {}
        self._ranges: dict = {}
        self._breaks: dict = {}
        self._spec: dict = {}

        self.stats = {"mask_calls": 0, "entries_built": 0, "range_hits": 0,
                      "rows_built": 0, "build_seconds": 0.0}

    def _build_levels(self) -> None:
        lanes: list[dict] = [{bytes((b,)): b for b in range(256)}]
        ends: list[list] = [[]]
        self.tok_pos: dict = {}
        for tid, b in enumerate(self.vocab):
            if tid == self.eos_id or not b:
                continue
            for d in range(1, len(b) + 1):
                if len(lanes) < d:
                    lanes.append({})
                    ends.append([])
                lanes[d - 1].setdefault(b[:d], len(lanes[d - 1]))
            ends[len(b) - 1].append((tid, lanes[len(b) - 1][b]))
            self.tok_pos[tid] = (len(b) - 1, lanes[len(b) - 1][b])
        self.levels = []
        self._lbytes = [[p[-1] for p in sorted(lv, key=lv.get)] for lv in lanes]
        self._toks_at = [[[] for _ in lv] for lv in lanes]
        for d, e in enumerate(ends):
            for t, lane in e:
                self._toks_at[d][lane].append(t)
        self._kids = [[[] for _ in lv] for lv in lanes]
        for d in range(1, len(lanes)):
            for p, lane in lanes[d].items():
                self._kids[d - 1][lanes[d - 1][p[:-1]]].append(lane)
        for d, lv in enumerate(lanes):
            prefixes = sorted(lv, key=lv.get)
            self.levels.append(_Level(
                byte=np.array([p[-1] for p in prefixes], np.int64),
                parent=np.array([lanes[d - 1][p[:-1]] if d else 0 for p in prefixes], np.int64),
                tok_ids=np.array([t for t, _ in ends[d]], np.int64),
                tok_lane=np.array([lane for _, lane in ends[d]], np.int64)))

    def _pre_c(self, j: int, cc: int) -> int:
        """MCU classes (at the token's start) for which, after ``j`` markers, the current
        value ``(i % 8) + 8 * is_last`` is in bitset ``cc``."""
        key = (j, cc)
        r = self._preC.get(key)
        if r is None:
            r = 0
            for d in range(j, self.R + 1):
                last = d == j and d < self.R
                for m in range(8):
                    if (cc >> (((m + j) % 8) + 8 * last)) & 1:
                        r |= 1 << (m + 8 * d)
            self._preC[key] = r
        return r

    def mcu_class(self, i: int) -> int:
        """Class of the MCU being written, ``i`` = MCUs completed so far."""
        return (i % 8) + 8 * min(max(self.n_mcus - 1 - i, 0), self.R)

    # ------------------------------------------------------------ scalar byte step
    def step_byte(self, core: tuple, p: int, i: int, b: int):
        """One byte with a concrete context: ``(core', p', i')`` or None if invalid.
        ``core = (sid, k, ff)``, ``p`` predictor index, ``i`` MCUs completed."""
        sid, k, ff = core
        if sid > 0:
            if ff:
                return ((sid, k, 0), p, i) if b == 0 else None
            if sid == self.PAD:
                return ((S_MARK, 0, 0), p, i) if b == 0xFF else None
            r = self.a.scan_byte(sid, k, p, b)
            if r is None:
                return None
            return ((r[0], r[1], int(b == 0xFF)), r[2], i)
        if sid == S_MARK:
            last = i == self.n_mcus - 1
            if last and b == 0xD9:
                return ((S_END, 0, 0), p, i + 1)
            if not last and b == 0xD0 + i % 8:
                return ((self.DC0, 0, 0), self.B, i + 1)
            return None
        if sid <= S_HDR:
            pos = S_HDR - sid
            if b != self.header[pos]:
                return None
            return ((self.DC0 if pos + 1 == len(self.header) else sid - 1, 0, 0), p, i)
        return None  # after EOI: only EOS

    # ------------------------------------------------------------ token tables
    def _build_token_tables(self) -> None:
        """Per (scan state, token): the outcome of the whole token from that byte-aligned
        state, with k symbolic, exactly like the byte tables (row ``sid * V + token``):
        valid iff ``k0 <= TTHR``; then state ``TNXT``, ``k = k0 * TMUL + TADD``, stuffed
        zero due ``TFF``, token-start predictor constraint ``kbits[TKID]``, predictor
        update ``TUM``/``TUV``. Where the token ends the block at coefficient 63 for one
        k0, the alternative outcome is listed in the ``TA_*`` arrays (token ``TA_TOK``,
        at k0 ``TA_K``), sorted by state. ``TSPEC``: the token runs into a marker, and is
        walked byte by byte at entry time instead."""
        t0 = time.perf_counter()
        key = (self.layout.blocks, self.layout.dc_bound, tuple(self.vocab), self.eos_id)
        shared = _TOKEN_TABLES.get(key)  # the same for every header / image size
        if shared is not None:
            self.__dict__.update(shared)
            self.token_tables_seconds = 0.0
            return
        a, V = self.a, self.V
        n = a.n_states
        rows = n * V
        self.TTHR = np.full(rows, -1, np.int64)
        self.TNXT = np.zeros(rows, np.int64)
        self.TMUL = np.zeros(rows, np.int64)
        self.TADD = np.zeros(rows, np.int64)
        self.TKID = np.zeros(rows, np.int64)
        self.TUM = np.zeros(rows, np.int64)
        self.TUV = np.zeros(rows, np.int64)
        self.TFF = np.zeros(rows, np.int64)
        self.TSPEC = np.zeros(rows, bool)
        alt_parts: list = []   # (row, k0, state, k, kid, pred mode, pred value) arrays
        sids = np.array([s for s in range(1, n) if s != a.PAD], np.int64)
        # depth 1: the byte tables
        lv = self.levels[0]
        if len(lv.tok_ids):
            tok, byt = lv.tok_ids, lv.byte[lv.tok_lane]
            dst = (sids[:, None] * V + tok[None, :]).ravel()
            src = (sids[:, None] * 256 + byt[None, :]).ravel()
            for T, B in ((self.TTHR, a.THRB), (self.TNXT, a.NXTB), (self.TMUL, a.MULB),
                         (self.TADD, a.ADDB), (self.TKID, a.KIDB), (self.TUM, a.UMB),
                         (self.TUV, a.UVB)):
                T[dst] = B[src]
            self.TFF[dst] = np.tile(byt == 0xFF, len(sids))
            for j in range(3):
                has = a.ALTK[src, j] >= 0
                ai = a.ALTI[src[has], j]
                alt_parts.append((dst[has], a.ALTK[src[has], j], a.ALT_N[ai], a.ALT_ADD[ai],
                                  a.ALT_KID[ai], a.ALT_UM[ai], a.ALT_UV[ai]))
        if len(self.levels) > 1:
            st = self._depth1_lanes(sids)
            for d in range(1, len(self.levels)):
                st = self._expand(st, d)
                if not len(st["node"]):
                    break
                st = self._token_byte(st, alt_parts)
                self._record(st, d, alt_parts)
        # alternatives sorted by row: those of state s are TA_*[TAPTR[s]:TAPTR[s + 1]]
        cols = [np.concatenate([p[i] for p in alt_parts]) if alt_parts else
                np.zeros(0, np.int64) for i in range(7)]
        order = np.argsort(cols[0], kind="stable")
        (ta_row, self.TA_K, self.TA_N, self.TA_ADD, self.TA_KID, self.TA_UM,
         self.TA_UV) = (c[order].astype(np.int64) for c in cols)
        self.TA_TOK = ta_row % V
        self.TAPTR = np.searchsorted(ta_row, np.arange(n + 1) * V)
        for name, dt in (("TTHR", np.int8), ("TNXT", np.int16), ("TMUL", np.int8),
                         ("TADD", np.int8), ("TKID", np.int32), ("TUM", np.int8),
                         ("TUV", np.int16), ("TFF", np.int8), ("TA_K", np.int8),
                         ("TA_N", np.int16), ("TA_ADD", np.int8), ("TA_KID", np.int32),
                         ("TA_UM", np.int8), ("TA_UV", np.int16), ("TA_TOK", np.int32)):
            setattr(self, name, _narrow(getattr(self, name), dt))
        self._kbits = a.kbits  # the automaton's interned bitsets (it grows in place)
        self.TDEP = self.TKID != 0      # valid only for some predictors
        self.TFREE = ~self.TDEP
        self._mA = tuple(memoryview(x) for x in (self.TA_N, self.TA_ADD, self.TA_KID,
                                                 self.TA_UM, self.TA_UV))
        self._mT = tuple(memoryview(x) for x in (self.TTHR, self.TNXT, self.TMUL, self.TADD,
                                                 self.TKID, self.TUM, self.TUV, self.TFF))
        _TOKEN_TABLES[key] = {k: getattr(self, k) for k in (
            "TTHR", "TNXT", "TMUL", "TADD", "TKID", "TUM", "TUV", "TFF", "TSPEC", "TA_K",
            "TA_N", "TA_ADD", "TA_KID", "TA_UM", "TA_UV", "TA_TOK", "TAPTR", "TDEP", "TFREE",
            "_kbits", "_mA", "_mT")}
        self.token_tables_seconds = time.perf_counter() - t0

    def _depth1_lanes(self, sids: np.ndarray) -> dict:
        """Lanes (one per state and first byte that starts a longer token, plus one per
        coefficient-63 alternative) after the first byte, from the byte tables."""
        a = self.a
        firsts = np.array([lane for lane, kids in enumerate(self._kids[0]) if kids], np.int64)
        sid0 = np.repeat(sids, len(firsts))
        node = np.tile(firsts, len(sids))
        src = sid0 * 256 + node  # depth-1 lane b is byte b
        live = a.THRB[src] >= 0
        is_ac = a.IS_AC[sid0]
        i64 = np.int64
        sl = src[live]
        st = {"sid0": sid0[live], "node": node[live], "s2": 2 * a.NXTB[sl].astype(i64),
              "kfix": np.where(is_ac[live], -1, 0), "rel": is_ac[live] & (a.MULB[sl] == 1),
              "mul": a.MULB[sl].astype(i64), "add": a.ADDB[sl].astype(i64),
              "thr": a.THRB[sl].astype(i64), "alive": np.ones(len(sl), bool),
              "kid": a.KIDB[sl].astype(i64), "um": a.UMB[sl].astype(i64),
              "uv": a.UVB[sl].astype(i64), "ff": (node[live] == 0xFF).astype(i64),
              "alt": np.zeros(len(sl), bool), "spec": np.zeros(len(sl), bool)}
        parts = [st]
        for j in range(3):
            ak = a.ALTK[src, j]
            has = ak >= 0
            if not np.count_nonzero(has):
                continue
            ai = a.ALTI[src[has], j]
            m = int(np.count_nonzero(has))
            parts.append({"sid0": sid0[has], "node": node[has], "s2": 2 * a.ALT_N[ai],
                          "kfix": ak[has].astype(np.int64), "rel": np.zeros(m, bool),
                          "mul": np.zeros(m, np.int64),
                          "add": a.ALT_ADD[ai], "thr": np.full(m, _NO_LIMIT, np.int64),
                          "alive": np.ones(m, bool), "kid": a.ALT_KID[ai], "um": a.ALT_UM[ai],
                          "uv": a.ALT_UV[ai], "ff": (node[has] == 0xFF).astype(np.int64),
                          "alt": np.ones(m, bool), "spec": np.zeros(m, bool)})
        return {k: np.concatenate([p[k] for p in parts]) for k in st}

    def _expand(self, st: dict, d: int) -> dict:
        """Lanes at depth ``d`` -> one lane per child prefix at depth ``d + 1``."""
        kids = self._kids[d - 1]
        cnt = np.array([len(k) for k in kids], np.int64)
        off = np.concatenate([[0], np.cumsum(cnt)])
        flat = np.array([c for k in kids for c in k], np.int64)
        keep = st["alive"] | st["spec"]
        st = {k: v[keep] for k, v in st.items()}
        rep = cnt[st["node"]]
        out = {k: np.repeat(v, rep) for k, v in st.items()}
        start = np.repeat(off[st["node"]], rep)
        within = np.arange(len(start)) - np.repeat(np.cumsum(rep) - rep, rep)
        out["node"] = flat[start + within] if len(start) else np.zeros(0, np.int64)
        out["byte"] = self.levels[d].byte[out["node"]]
        return out

    def _token_byte(self, st: dict, alt_parts: list) -> dict:
        """One more byte for every lane: stuffing, end of MCU (-> byte-by-byte at entry
        time), else 8 bits through the automaton's bit tables."""
        a = self.a
        b = st["byte"]
        ffl = st["alive"] & (st["ff"] == 1)
        st["alive"] &= ~(ffl & (b != 0))
        st["ff"][ffl] = 0
        pad = st["alive"] & ~ffl & (st["s2"] == 2 * a.PAD)
        st["spec"] |= pad & (b == 0xFF)   # a marker inside the token
        st["alive"] &= ~pad
        norm = st["alive"] & ~ffl
        if not np.count_nonzero(norm):
            return st
        idx = np.flatnonzero(norm)
        sub = {k: v[idx] for k, v in st.items()}
        forks: list = []
        sub = a._run_bits(sub, 7, forks)
        sub["ff"] = (sub["byte"] == 0xFF).astype(np.int64)
        parts = [{k: v[~norm] for k, v in st.items()}, sub]
        for j, f in forks:
            f["alt"] = np.ones(len(f["node"]), bool)
            if j > 0:
                f = a._run_bits(f, j - 1, None)
            f["ff"] = (f["byte"] == 0xFF).astype(np.int64)
            parts.append(f)
        return {k: np.concatenate([p[k] for p in parts]) for k in st}

    def _record(self, st: dict, d: int, alt_parts: list) -> None:
        """Write the outcomes of the tokens that end at depth ``d + 1``."""
        lv = self.levels[d]
        if not len(lv.tok_ids):
            return
        V = self.V
        tok_of = {}
        for t, lane in zip(lv.tok_ids.tolist(), lv.tok_lane.tolist()):
            tok_of.setdefault(lane, []).append(t)
        ends = np.isin(st["node"], lv.tok_lane)
        s = {k: v[ends] for k, v in st.items()}
        for lane, toks in tok_of.items():
            here = s["node"] == lane
            if not np.count_nonzero(here):
                continue
            h = {k: v[here] for k, v in s.items()}
            for t in toks:
                rows = h["sid0"] * V + t
                spec = h["spec"]
                self.TSPEC[rows[spec]] = True
                dflt = ~h["alt"] & h["alive"] & ~spec
                r = rows[dflt]
                self.TTHR[r] = np.where(h["kfix"][dflt] < 0, h["thr"][dflt], _NO_LIMIT)
                self.TNXT[r] = h["s2"][dflt] // 2
                self.TMUL[r] = h["mul"][dflt]
                self.TADD[r] = h["add"][dflt]
                self.TKID[r] = h["kid"][dflt]
                self.TUM[r] = h["um"][dflt]
                self.TUV[r] = h["uv"][dflt]
                self.TFF[r] = h["ff"][dflt]
                al = h["alt"] & h["alive"] & ~spec
                if np.count_nonzero(al):
                    alt_parts.append((rows[al], h["kfix"][al], h["s2"][al] // 2, h["add"][al],
                                      h["kid"][al], h["um"][al], h["uv"][al]))

    # ------------------------------------------------------------ entries
    def entry(self, core: tuple) -> _Entry:
        """The cached entry of ``core`` (built on first use)."""
        e = self._entries.get(core)
        if e is not None:
            return e
        sid, k, ff = core
        rkey = (sid, ff)
        rng = self._ranges.get(rkey)
        if rng is not None:  # entries valid on k intervals (disjoint), sorted by start
            i = bisect.bisect_right(rng[0], k) - 1
            if i >= 0 and k <= rng[1][i].khi:
                e = rng[1][i]
                self.stats["range_hits"] += 1
                self._entries[core] = e
                return e
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
            self._ranges.clear()
        t0 = time.perf_counter()
        e = self._build_entry(core)
        self.stats["build_seconds"] += time.perf_counter() - t0
        self.stats["entries_built"] += 1
        self._entries[core] = e
        if e.khi > e.klo:
            starts, ents = self._ranges.setdefault(rkey, ([], []))
            i = bisect.bisect_left(starts, e.klo)
            starts.insert(i, e.klo)
            ents.insert(i, e)
        return e

    def _build_entry(self, core: tuple) -> _Entry:
        """The entry of ``core``; for AC cores also the k interval it is valid for."""
        sid0, k0, ff0 = core
        base = torch.zeros(self.V, dtype=torch.bool)
        if sid0 in (S_END, S_FIN):
            base[self.eos_id] = True
            return _Entry(k0, k0, k0, base, [], eos_only=True)
        track = sid0 > 0 and bool(self.a.IS_AC[sid0])
        iv = [1, 64] if track else [k0, k0]
        if sid0 > 0 and not ff0 and sid0 != self.PAD:  # the common case: token tables
            e = self._token_entry(sid0, k0, iv, track)
            if not iv[0] <= k0 <= iv[1]:
                raise AssertionError(f"entry range {iv} does not contain k={k0}")
            e.klo, e.khi = iv
            return e
        else:  # header, marker, stuffing, end of MCU: walk the vocabulary's byte trie
            lv = self.levels[0]
            L = _Lanes.start(len(lv.byte), sid0, k0, ff0, track)
            self._run_level(lv, L, k0, iv)
            done = [L]
            extra: dict = {}
            for d in range(1, len(self.levels)):
                lv = self.levels[d]
                live = L.ok[lv.parent]
                n = np.count_nonzero(live)
                if not n:
                    break
                if n > _SCALAR_LANES:  # one vectorized step
                    L = L.gather(lv.parent)
                    self._run_level(lv, L, k0, iv)
                    done.append(L)
                    continue
                # few live prefixes: finish their whole subtrees lane by lane
                for c in np.flatnonzero(live).tolist():
                    p = int(lv.parent[c])
                    kb = self.FULLP if L.K is None else _row_bits(L.K[p])
                    st = [int(L.sid[p]), int(L.k[p]), bool(L.rel[p]), int(L.ff[p]),
                          int(L.um[p]), int(L.uv[p]), kb, int(L.dj[p]), L.kc.get(p, self.FULLC)]
                    self._subtree(d, c, st, k0, iv, extra)
                break
            e = _Entry(k0, iv[0], iv[1], base, done, extra={
                t: (st[0], st[1] - (k0 if st[2] else 0), st[2], st[3], st[4], st[5], st[7],
                    st[6], st[8]) for t, st in extra.items()})
        if not iv[0] <= k0 <= iv[1]:
            raise AssertionError(f"entry range {iv} does not contain k={k0}")
        return self._assemble(e)

    def _token_entry(self, sid0: int, k0: int, iv: list, track: bool) -> _Entry:
        """The entry of scan core ``(sid0, k0, 0)`` read from the token tables; tokens that
        run into a marker are walked byte by byte. Narrows ``iv`` to the k interval on
        which every token's outcome is the same."""
        V = self.V
        sl = slice(sid0 * V, sid0 * V + V)
        valid = self.TTHR[sl] >= k0
        kid = self.TKID[sl]
        alo, ahi = int(self.TAPTR[sid0]), int(self.TAPTR[sid0 + 1])
        ak = self.TA_K[alo:ahi]
        if track:
            bp = self._breaks.get(sid0)
            if bp is None:
                thr = self.TTHR[sl]
                au = np.unique(ak).tolist()
                bp = self._breaks[sid0] = (np.unique(thr[thr >= 1]).tolist(), set(au), au)
            ts, aset, al = bp
            i = bisect.bisect_left(ts, k0)            # ts[i]: smallest threshold >= k0
            if i < len(ts):
                iv[1] = min(iv[1], ts[i])
            if i:
                iv[0] = max(iv[0], ts[i - 1] + 1)
            if k0 in aset:
                iv[0] = iv[1] = k0
            elif al:
                j = bisect.bisect_left(al, k0)
                if j < len(al):
                    iv[1] = min(iv[1], al[j] - 1)
                if j:
                    iv[0] = max(iv[0], al[j - 1] + 1)
        e = _Entry(k0, k0, k0, None, [], by_token=True, sid0=sid0, track=track)
        hit = np.flatnonzero(ak == k0)
        if len(hit):  # these tokens end the block at coefficient 63
            valid, kid = valid.copy(), kid.copy()
            ai = alo + hit
            toks = self.TA_TOK[ai]
            valid[toks] = True
            kid[toks] = self.TA_KID[ai]
            e.alt = dict(zip(toks.tolist(), ai.tolist()))  # token -> TA_* index
        spec = self._spec.get(sid0)
        if spec is None:
            spec = self._spec[sid0] = np.flatnonzero(self.TSPEC[sl]).tolist()
        if spec:
            e.extra = {}
            for t in spec:
                st = [sid0, k0, track, 0, 0, 0, self.FULLP, 0, self.FULLC]
                if all(self._lane_byte(st, b, k0, iv) for b in self.vocab[t]):
                    e.extra[t] = (st[0], st[1] - (k0 if st[2] else 0), st[2], st[3], st[4],
                                  st[5], st[7], st[6], st[8])
        if len(hit):
            has_kid = kid != 0
            base = valid & ~has_kid
            dep = np.flatnonzero(valid & has_kid)
        else:
            base = valid & self.TFREE[sl]
            dep = np.flatnonzero(valid & self.TDEP[sl])
        if e.extra:
            free, xt, xk, xc = self._split_extra(e)
            base[free] = True
            if xt:
                self._set_deps(e, np.concatenate([dep, xt]),
                               np.concatenate([kid[dep], xk]),
                               [self.FULLC] * len(dep) + xc)
                dep = None
        if dep is not None and len(dep):
            e.dep_ids, e.dep_kid = dep, kid[dep]
        e.base = torch.from_numpy(base)
        return e

    def _split_extra(self, e: _Entry) -> tuple[list[int], list[int], list[int], list[int]]:
        """``e.extra`` (tokens walked one by one) as (tokens valid whatever the DC
        predictor and MCU class, then the others: ids, predictor-set ids, class bitsets)."""
        free, ids, kids, kcs = [], [], [], []
        for t, r in (e.extra or {}).items():
            if r[7] == self.FULLP and r[8] == self.FULLC:
                free.append(t)
            else:
                ids.append(t)
                kids.append(self.a._kid_of(r[7]))
                kcs.append(r[8])
        return free, ids, kids, kcs

    def _set_deps(self, e: _Entry, ids, kids, kcs: list[int]) -> None:
        e.dep_ids = np.asarray(ids, np.int64)
        e.dep_kid = np.asarray(kids, np.int64)
        if any(c != self.FULLC for c in kcs):
            e.dep_kc = _bits_matrix(kcs, self.NC)

    def _assemble(self, e: _Entry) -> _Entry:
        """Fill ``e.base`` and the predictor/MCU-dependent tokens from its trie lanes."""
        base_np = e.base.numpy()
        ids, kids, kcs = [], [], []
        for d, L in enumerate(e.lanes):
            lv = self.levels[d]
            tl, tids = lv.tok_lane, lv.tok_ids
            if not len(tids):
                continue
            okl = L.ok[tl]
            if L.K is None and not L.kc:
                base_np[tids] = okl
                continue
            free = okl.copy()
            if L.K is not None:
                free &= L.K[tl].all(1)
            if L.kc:
                free &= np.array([lane not in L.kc for lane in tl.tolist()])
            base_np[tids] = free
            for t, lane in zip(tids[okl & ~free].tolist(), tl[okl & ~free].tolist()):
                ids.append(t)
                kids.append(0 if L.K is None else self.a._kid_of(_row_bits(L.K[lane])))
                kcs.append(L.kc.get(lane, self.FULLC))
        free, xt, xk, xc = self._split_extra(e)
        base_np[free] = True
        ids, kids, kcs = ids + xt, kids + xk, kcs + xc
        if ids:
            self._set_deps(e, ids, kids, kcs)
        return e

    def _subtree(self, d: int, lane: int, st: list, k0: int, iv: list, out: dict) -> None:
        """Scalar walk of trie lane ``lane`` at depth ``d + 1`` and everything below it;
        ``st`` is the state before its last byte: ``[sid, k, rel, ff, pred mode, pred
        value, predictor bitset, markers, MCU class bitset]``."""
        if not self._lane_byte(st, self._lbytes[d][lane], k0, iv):
            return
        for t in self._toks_at[d][lane]:
            out[t] = tuple(st)
        for c in self._kids[d][lane]:
            self._subtree(d + 1, c, list(st), k0, iv, out)

    def _lane_byte(self, s: list, b: int, k0: int, iv: list) -> bool:
        """The scalar twin of :meth:`_run_level` for one lane (in place); False if the
        byte is invalid for every predictor / MCU class."""
        sid, k, rel, ff, um, uv, kb, dj, kc = s
        if sid > 0:
            if ff:
                s[3] = 0
                return b == 0
            if sid == self.PAD:
                s[0], s[2] = S_MARK, False
                return b == 0xFF
            a = self.a
            row = sid * 256 + b
            thr = a.mTHR[row]
            m = a.mALTK
            alts = (m[3 * row], m[3 * row + 1], m[3 * row + 2])
            if rel and iv is not None:
                off = k - k0
                if k <= thr:
                    iv[1] = min(iv[1], thr - off)
                elif thr >= 1:
                    iv[0] = max(iv[0], thr - off + 1)
                for ak in alts:
                    if ak >= 0:
                        p = ak - off
                        if p == k0:
                            iv[0] = iv[1] = k0
                        elif p > k0:
                            iv[1] = min(iv[1], p - 1)
                        else:
                            iv[0] = max(iv[0], p + 1)
            if k in alts:
                nsid, nk, kid, bum, buv = a.alt(row, alts.index(k))
                nrel = False
            elif k <= thr:
                mul = a.mMUL[row]
                nsid, nk, kid = a.mNXT[row], k * mul + a.mADD[row], a.mKID[row]
                bum, buv = a.mUM[row], a.mUV[row]
                nrel = rel and mul == 1
            else:
                return False
            if kid:
                kb &= _pre(um, uv, a.kbits[kid], self.FULLP)
                if not kb:
                    return False
            if bum == 2:
                um, uv = 2, buv
            elif bum == 1:
                um, uv = um or 1, uv + buv
            s[:] = [nsid, nk, nrel, int(b == 0xFF), um, uv, kb, dj, kc]
            return True
        if sid == S_MARK:
            if b == 0xD9:
                cc, nxt = 0xFF00, S_END
            elif 0xD0 <= b <= 0xD7:
                cc, nxt = 1 << (b - 0xD0), self.DC0
            else:
                return False
            kc &= self._pre_c(dj, cc)
            if not kc:
                return False
            s[:] = [nxt, 0, False, 0, 2 if nxt == self.DC0 else um,
                    self.B if nxt == self.DC0 else uv, kb, dj + 1, kc]
            return True
        if sid <= S_HDR:
            pos = S_HDR - sid
            if b != self.header[pos]:
                return False
            s[0] = self.DC0 if pos + 1 == len(self.header) else sid - 1
            return True
        return False

    def rec(self, e: _Entry, tok: int) -> tuple | None:
        """Token ``tok``'s transition from entry ``e``, or None if it is never valid:
        ``(sid, k or k offset, k is relative, ff, pred mode, pred value, markers,
        allowed starting predictors (bitset), allowed MCU classes (bitset))``."""
        if e.eos_only:
            return (S_FIN, 0, False, 0, 0, 0, 0, self.FULLP, self.FULLC) \
                if tok == self.eos_id else None
        if e.extra and tok in e.extra:
            return e.extra[tok]
        if e.by_token:
            if not 0 <= tok < self.V:
                return None
            row = e.sid0 * self.V + tok
            mT = self._mT
            if e.alt and tok in e.alt:  # the token ends the block at coefficient 63
                i = e.alt[tok]
                mA = self._mA
                return (mA[0][i], mA[1][i], False, mT[7][row], mA[3][i], mA[4][i], 0,
                        self.a.kbits[mA[2][i]], self.FULLC)
            if mT[0][row] < e.k0:
                return None
            return (mT[1][row], mT[3][row], e.track and mT[2][row] == 1, mT[7][row],
                    mT[5][row], mT[6][row], 0, self._kbits[mT[4][row]], self.FULLC)
        r = e.recs.get(tok) if e.recs else None
        if r is None:
            pos = self.tok_pos.get(tok)
            if pos is None or pos[0] >= len(e.lanes):
                return None
            L = e.lanes[pos[0]]
            lane = pos[1]
            if not L.ok[lane]:
                return None
            rel = bool(L.rel[lane])
            r = (int(L.sid[lane]), int(L.k[lane]) - (e.k0 if rel else 0), rel,
                 int(L.ff[lane]), int(L.um[lane]), int(L.uv[lane]), int(L.dj[lane]),
                 self.FULLP if L.K is None else _row_bits(L.K[lane]),
                 L.kc.get(lane, self.FULLC))
            if e.recs is None:
                e.recs = {}
            e.recs[tok] = r
        return r

    def _run_level(self, lv: _Level, L: _Lanes, k0: int, iv: list | None) -> None:
        """Advance every live lane by the last byte of its prefix (in place)."""
        byte = lv.byte
        sid, ok, ff = L.sid, L.ok, L.ff
        scan = ok & (sid > 0)
        ffl = scan & (ff == 1)
        padl = scan & (ff == 0) & (sid == self.PAD)
        normal = scan & (ff == 0) & (sid != self.PAD)
        hdr = ok & (sid <= S_HDR)
        other = ok & (sid < 0) & (sid > S_HDR)
        if np.count_nonzero(ffl):  # the stuffed zero after 0xFF
            ok &= ~(ffl & (byte != 0))
            ff[ffl] = 0
        if np.count_nonzero(padl):  # MCU data complete: a marker starts
            ok &= ~(padl & (byte != 0xFF))
            sid[padl & ok] = S_MARK
            L.rel[padl] = False
        if np.count_nonzero(hdr):
            pos = S_HDR - sid[hdr]
            good = byte[hdr] == self._hdr[pos]
            ok[hdr] = good
            sid[hdr] = np.where(pos + 1 == len(self.header), self.DC0, sid[hdr] - 1)
        if np.count_nonzero(other):
            self._special_lanes(np.flatnonzero(other), byte, L)
        idx = np.flatnonzero(normal)
        if len(idx):
            self._scan_lanes(idx, byte, L, k0, iv)

    def _special_lanes(self, lanes: np.ndarray, byte: np.ndarray, L: _Lanes) -> None:
        """Marker and after-EOI lanes (rare; plain Python)."""
        for lane in lanes.tolist():
            s, b = int(L.sid[lane]), int(byte[lane])
            if s == S_MARK:
                if b == 0xD9:
                    cc, nxt = 0xFF00, S_END
                elif 0xD0 <= b <= 0xD7:
                    cc, nxt = 1 << (b - 0xD0), self.DC0
                else:
                    L.ok[lane] = False
                    continue
                kc = L.kc.get(lane, self.FULLC) & self._pre_c(int(L.dj[lane]), cc)
                if not kc:
                    L.ok[lane] = False
                    continue
                L.kc[lane] = kc
                L.dj[lane] += 1
                L.sid[lane], L.k[lane] = nxt, 0
                if nxt == self.DC0:
                    L.um[lane], L.uv[lane] = 2, self.B
            else:
                L.ok[lane] = False

    def _scan_lanes(self, idx: np.ndarray, byte: np.ndarray, L: _Lanes, k0: int,
                    iv: list | None) -> None:
        """One entropy-coded byte for lanes ``idx`` via the byte tables (vectorized)."""
        a = self.a
        sids = L.sid[idx]
        b = byte[idx]
        rows = sids * 256 + b
        kk = L.k[idx]
        thr = a.THRB[rows]
        valid = kk <= thr
        rel = L.rel[idx]
        altk = a.ALTK[rows]
        if iv is not None and np.count_nonzero(rel):
            # the k interval on which every decision of these lanes is the same
            off = (kk - k0)[rel]
            t = thr[rel] - off
            v = valid[rel]
            if np.count_nonzero(v):
                iv[1] = min(iv[1], int(t[v].min()))
            bad = ~v & (thr[rel] >= 1)
            if np.count_nonzero(bad):
                iv[0] = max(iv[0], int(t[bad].max()) + 1)
            ak = altk[rel]
            if np.count_nonzero(ak >= 0):
                pts = (ak - off[:, None])[ak >= 0]
                if np.count_nonzero(pts == k0):
                    iv[0] = iv[1] = k0
                else:
                    hi, lo = pts[pts > k0], pts[pts < k0]
                    if len(hi):
                        iv[1] = min(iv[1], int(hi.min()) - 1)
                    if len(lo):
                        iv[0] = max(iv[0], int(lo.max()) + 1)
        mul = a.MULB[rows]
        nsid = a.NXTB[rows]
        nk = kk * mul + a.ADDB[rows]
        kid = a.KIDB[rows]
        bum = a.UMB[rows]
        buv = a.UVB[rows]
        nrel = rel & (mul == 1)
        hit = (altk == kk[:, None]) & (altk >= 0)
        if np.count_nonzero(hit):  # the byte ends the block at coefficient 63
            h = np.flatnonzero(hit.any(1))
            ai = a.ALTI[rows[h], np.argmax(hit[h], 1)]
            valid[h] = True
            nsid[h], nk[h], kid[h] = a.ALT_N[ai], a.ALT_ADD[ai], a.ALT_KID[ai]
            bum[h], buv[h], nrel[h] = a.ALT_UM[ai], a.ALT_UV[ai], False
        um, uv = L.um[idx], L.uv[idx]
        pc = valid & (kid != 0)
        if np.count_nonzero(pc):
            w = np.flatnonzero(pc)
            krows = a.KROWS[kid[w]]
            m, v = um[w], uv[w]
            pre = krows.copy()
            sh = m == 1
            if np.count_nonzero(sh):
                cols = np.arange(self.NP)[None, :] + v[sh][:, None]
                inside = (cols >= 0) & (cols < self.NP)
                pre[sh] = np.take_along_axis(krows[sh], np.clip(cols, 0, self.NP - 1),
                                             1) & inside
            st = m == 2
            if np.count_nonzero(st):
                pre[st] = krows[st, v[st]][:, None]
            if L.K is None:
                L.K = np.ones((len(L.ok), self.NP), bool)
            lanes = idx[w]
            L.K[lanes] &= pre
            valid[w] &= L.K[lanes].any(1)
        pm = valid & (bum != 0)
        if np.count_nonzero(pm):
            setl = pm & (bum == 2)
            um[setl], uv[setl] = 2, buv[setl]
            shl = pm & (bum == 1)
            uv[shl] += buv[shl]
            um[shl] = np.where(um[shl] == 0, 1, um[shl])
        L.ok[idx] = valid
        L.sid[idx] = nsid
        L.k[idx] = nk
        L.rel[idx] = nrel
        L.ff[idx] = b == 0xFF
        L.um[idx], L.uv[idx] = um, uv

    def _dep_ok(self, e: _Entry, p: int, c: int) -> np.ndarray:
        """Which of ``e.dep_ids`` are allowed for predictor index ``p``, MCU class ``c``."""
        ok = self.a.KCOLS[p][e.dep_kid]
        if e.dep_kc is not None:
            ok = ok & e.dep_kc[:, c]
        return ok

    def _key(self, e: _Entry, p: int, c: int) -> tuple:
        return (p, c if e.dep_kc is not None else -1)

    def bias(self, e: _Entry, p: int, c: int) -> torch.Tensor:
        """Float32 [V] additive mask of entry ``e`` (0 allowed, -inf not)."""
        if e.biases is None:
            e.biases = {None: torch.from_numpy(np.where(e.base.numpy(), np.float32(0.0),
                                                        np.float32("-inf")))}
        if e.dep_ids is None:
            return e.biases[None]
        key = self._key(e, p, c)
        b = e.biases.get(key)
        if b is None:
            b = e.biases[None].clone()
            ok = self._dep_ok(e, p, c)
            if np.count_nonzero(ok):
                b[torch.from_numpy(e.dep_ids[ok])] = 0.0
            e.biases[key] = b
            self.stats["rows_built"] += 1
        return b

    def row(self, e: _Entry, p: int, c: int) -> torch.Tensor:
        """Mask of entry ``e`` for predictor index ``p`` and MCU class ``c``."""
        if e.dep_ids is None:
            return e.base
        key = self._key(e, p, c)
        if e.rows is None:
            e.rows = {}
        m = e.rows.get(key)
        if m is None:
            m = e.base.clone()
            ok = self._dep_ok(e, p, c)
            if np.count_nonzero(ok):
                m[torch.from_numpy(e.dep_ids[ok])] = True
            e.rows[key] = m
            self.stats["rows_built"] += 1
        return m

    def cache_info(self) -> dict:
        """Counters plus ``distinct_cores`` (token-boundary cores seen), ``entries``
        (distinct masks computed) and ``hit_rate`` (share of mask calls that did not
        build an entry)."""
        d = dict(self.stats)
        d["distinct_cores"] = len(self._entries)
        d["entries"] = d["entries_built"]
        d["hit_rate"] = 1.0 - d["entries_built"] / max(d["mask_calls"], 1)
        d["automaton_states"] = self.a.n_states
        return d


def _narrow(a: np.ndarray, dt) -> np.ndarray:
    """``a`` as the smaller integer type ``dt`` (the tables are large; values are small)."""
    info = np.iinfo(dt)
    if len(a) and (a.min() < info.min or a.max() > info.max):
        raise AssertionError(f"table values {a.min()}..{a.max()} do not fit {dt}")
    return a.astype(dt)


def _row_bits(row: np.ndarray) -> int:
    """Bool vector -> Python-int bitset (bit j = row[j])."""
    return int.from_bytes(np.packbits(row, bitorder="little").tobytes(), "little")


def _bits_matrix(sets: list[int], n: int) -> np.ndarray:
    """Python-int bitsets -> bool matrix [len(sets), n] (column j = bit j)."""
    nbytes = (n + 7) // 8
    raw = b"".join(v.to_bytes(nbytes, "little") for v in sets)
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(len(sets), nbytes)
    return np.unpackbits(arr, axis=1, bitorder="little")[:, :n].astype(bool)


_COMPILED: dict = {}


def compile_grammar(layout: ScanLayout, vocab: Sequence[bytes | None],
                    eos_id: int) -> CompiledScanGrammar:
    """The shared :class:`CompiledScanGrammar` for (layout, vocab, eos) (memoized)."""
    key = (layout, tuple(None if v is None else bytes(v) for v in vocab), eos_id)
    c = _COMPILED.get(key)
    if c is None:
        c = _COMPILED[key] = CompiledScanGrammar(layout, key[1], eos_id)
    return c


# ---------------------------------------------------------------------------- grammar
class JpegScanGrammar:
    """Incremental token-level grammar of one JPEG-LM stream (see the module docstring).

    Constraint API (the sampler hook): ``allowed_mask()``, ``advance(token_id)``,
    ``done``, ``copy()``; also ``reset()``, ``feed_bytes()``, ``state()``/``restore()``,
    ``mcu_index``, ``is_allowed()``.

    Args:
        width, height: image size in pixels.
        vocab: ``vocab[i]`` = bytes of token ``i``; None for special tokens other than
            ``eos_id`` (never allowed). Must contain all 256 single bytes.
        eos_id: the end-of-sequence token, allowed only after EOI (and then only it).
        quality, subsampling: Pillow settings (subsampling 2 = 4:2:0) used to build the
            header and find the DC quantizers; ignored where ``header``/``tables`` given.
        header: the constant modeled header (SOI .. SOS) to enforce; default: what Pillow
            writes for a grey image with these settings.
        tables: DQT segments (e.g. Pillow ``streamtype=1`` output) for the DC bounds.
        include_header: False to start right after the header (at the first MCU).
        save_kwargs: exact Pillow ``save`` arguments (``from_profile`` passes the
            profile's), overriding ``quality``/``subsampling``.

    Building the first grammar of a layout takes about a second (automaton tables),
    the first of each vocabulary about another (token tables); both are cached
    per process. Memory: about 30 MB shared + 25 MB per 320-token vocabulary (a few
    times more while building), plus the mask cache.
    """

    def __init__(self, width: int, height: int, vocab: Sequence[bytes | None], eos_id: int,
                 *, quality: int = 25, subsampling: int = 2, header: bytes | None = None,
                 tables: bytes | None = None, include_header: bool = True,
                 save_kwargs: dict | None = None, _compiled: CompiledScanGrammar | None = None):
        if _compiled is None:
            if header is None or tables is None:
                hdr_stream, tab_stream = pillow_streams(width, height, quality, subsampling,
                                                        save_kwargs)
                if header is None:
                    header = hdr_stream[:_segments(hdr_stream)[1]]
                if tables is None:
                    tables = tab_stream
            layout = parse_layout(bytes(header), tables)
            if (layout.width, layout.height) != (width, height):
                raise ProfileError(f"header is {layout.width}x{layout.height}, "
                                   f"expected {width}x{height}")
            if not include_header:
                layout = ScanLayout(b"", layout.width, layout.height, layout.blocks,
                                    layout.n_mcus, layout.dc_bound)
            _compiled = compile_grammar(layout, vocab, eos_id)
        self._c = _compiled
        self.reset()

    @classmethod
    def from_profile(cls, profile, vocab: Sequence[bytes | None], eos_id: int,
                     **kw) -> JpegScanGrammar:
        """Build from a profile object with ``.width``/``.height``; a
        :class:`jpeglm.profile.JpegProfile` also supplies quality, subsampling and
        its exact Pillow settings."""
        if hasattr(profile, "pillow_save_kwargs"):
            kw.setdefault("save_kwargs", profile.pillow_save_kwargs(2))
        sub = getattr(profile, "subsampling", 2)
        if isinstance(sub, str):
            sub = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[sub]
        kw.setdefault("quality", getattr(profile, "quality", 25))
        kw.setdefault("subsampling", sub)
        return cls(profile.width, profile.height, vocab, eos_id, **kw)

    # -- state -----------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the start of a stream (before the header)."""
        self._core = self._c.start_core
        self._p = self._c.B   # predictor index of a zero DC
        self._i = 0
        self._e = None        # entry of the current core, once looked up

    def state(self) -> tuple:
        """A hashable snapshot ``(core, predictor index, MCUs completed)``."""
        return (self._core, self._p, self._i)

    def restore(self, state: tuple) -> None:
        self._core, self._p, self._i = state
        self._e = None

    def copy(self) -> JpegScanGrammar:
        g = JpegScanGrammar.__new__(JpegScanGrammar)
        g._c, g._core, g._p, g._i, g._e = self._c, self._core, self._p, self._i, self._e
        return g

    @property
    def compiled(self) -> CompiledScanGrammar:
        return self._c

    @property
    def vocab_size(self) -> int:
        return self._c.V

    @property
    def n_mcus(self) -> int:
        return self._c.n_mcus

    @property
    def mcu_index(self) -> int:
        """MCUs completed (an MCU counts once its RST, or for the last its EOI, is written)."""
        return self._i

    @property
    def done(self) -> bool:
        """True once EOI is written (only EOS may follow) or EOS was emitted."""
        return self._core[0] in (S_END, S_FIN)

    @property
    def finished(self) -> bool:
        """True once EOS was emitted."""
        return self._core[0] == S_FIN

    # -- constraint API --------------------------------------------------------------
    def _entry(self) -> _Entry:
        e = self._e
        if e is None:
            e = self._c._entries.get(self._core)
            if e is None:
                e = self._c.entry(self._core)
            self._e = e
        return e

    def allowed_mask(self) -> torch.Tensor:
        """BoolTensor [vocab_size]: True for tokens that may come next. Cached and
        shared between calls: do not modify it in place. After EOI/EOS only EOS."""
        c = self._c
        c.stats["mask_calls"] += 1
        e = self._entry()
        if e.dep_ids is None:
            return e.base
        return c.row(e, self._p, c.mcu_class(self._i) if e.dep_kc is not None else -1)

    def allowed_bias(self) -> torch.Tensor:
        """FloatTensor [vocab_size] (float32): 0 where :meth:`allowed_mask` is True,
        -inf elsewhere, so ``logits + allowed_bias()`` masks in one cheap op. Cached
        and shared: do not modify it in place."""
        c = self._c
        c.stats["mask_calls"] += 1
        e = self._e
        if e is None:
            e = self._entry()
        elif e.dep_ids is None and e.biases is not None:  # the common case
            return e.biases[None]
        return c.bias(e, self._p, c.mcu_class(self._i) if e.dep_kc is not None else -1)

    def mask_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` [..., V'] with disallowed tokens at -inf (columns past the
        grammar's vocabulary too); a new tensor."""
        V = self._c.V
        if logits.shape[-1] == V and logits.dtype == torch.float32 and logits.device.type == "cpu":
            return logits + self.allowed_bias()
        mask = self.allowed_mask().to(logits.device)
        if logits.shape[-1] != V:
            full = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
            n = min(V, logits.shape[-1])
            full[:n] = mask[:n]
            mask = full
        return logits.masked_fill(~mask, float("-inf"))

    def _allowed_rec(self, tok: int):
        c = self._c
        r = c.rec(self._entry(), tok)
        if r is None:
            return None
        if r[7] != c.FULLP and not (r[7] >> self._p) & 1:
            return None
        if r[8] != c.FULLC and not (r[8] >> c.mcu_class(self._i)) & 1:
            return None
        return r

    def is_allowed(self, token_id: int) -> bool:
        """Whether ``token_id`` may come next."""
        return self._allowed_rec(int(token_id)) is not None

    def advance(self, token_id: int) -> None:
        """Consume one token; raises :class:`GrammarError` if it is not allowed."""
        tok = token_id if type(token_id) is int else int(token_id)
        c = self._c
        e = self._e
        r = c.rec(e if e is not None else self._entry(), tok)
        if r is None or (r[7] != c.FULLP and not (r[7] >> self._p) & 1) or (
                r[8] != c.FULLC and not (r[8] >> c.mcu_class(self._i)) & 1):
            if self._core[0] == S_FIN and tok == c.eos_id:
                return
            raise GrammarError(self._why(tok))
        sid, k, rel, ff, um, uv, dj, _, _ = r
        if rel:
            k += self._core[1]
        if um == 1:
            self._p += uv
        elif um == 2:
            self._p = uv
        self._i += dj
        self._core = (sid, k, ff)
        self._e = None

    def advance_many(self, token_ids: Iterable[int]) -> None:
        for t in token_ids:
            self.advance(t)

    def feed_bytes(self, data: bytes) -> None:
        """Advance over raw bytes (e.g. a prompt). Raises :class:`GrammarError` at the
        first byte that cannot continue a valid stream; the state is then left after
        the last valid byte."""
        c = self._c
        for n, b in enumerate(bytes(data)):
            r = c.step_byte(self._core, self._p, self._i, b)
            if r is None:
                raise GrammarError(f"byte {n} ({b:#04x}) cannot continue the stream at "
                                   f"{self.describe()}")
            self._core, self._p, self._i = r
            self._e = None

    def describe(self) -> str:
        """Where the grammar is, for error messages."""
        sid, k, ff = self._core
        if sid > 0:
            ph, blk, _, _ = self._c.a.states[sid]
            name = {PH_DC: "DC code", PH_DCX: "DC extra bits", PH_AC: "AC code",
                    PH_ACX: "AC extra bits", PH_PAD: "end of MCU data"}[ph]
            where = f"MCU {self._i}, {name}" + (f", block {blk}, k={k}" if blk >= 0 else "")
            return where + (" (stuffed 00 due)" if ff else "")
        if sid <= S_HDR:
            return f"header byte {S_HDR - sid}"
        return {S_MARK: f"marker after MCU {self._i}", S_END: "after EOI",
                S_FIN: "after EOS"}[sid]

    def _why(self, tok: int) -> str:
        if not 0 <= tok < self._c.V:
            return f"token {tok} is outside the vocabulary of {self._c.V}"
        v = self._c.vocab[tok]
        if tok == self._c.eos_id:
            return f"EOS is only allowed after EOI (at {self.describe()})"
        if v is None:
            return f"special token {tok} is never allowed in a JPEG stream"
        return f"token {tok} (bytes {v.hex()}) cannot continue the stream at {self.describe()}"


# --------------------------------------------------------------- transformers adapter
class JpegGrammarLogitsProcessor:
    """A ``transformers`` ``LogitsProcessor`` keeping one grammar per batch row.

    Each call feeds every token of ``input_ids`` the row's grammar has not seen yet (on
    the first call the prompt, later the last sampled token), then sets the scores of
    disallowed tokens to ``-inf``. Prompt tokens (the first ``prompt_len``; all tokens
    present at the first call if None) that are special (``vocab`` entry None) or EOS
    (left padding) are skipped. Rows that emitted EOS ignore further tokens (transformers
    pads finished rows itself) and allow only EOS.

    Args:
        grammar: template :class:`JpegScanGrammar`, copied per row in its current state.
        prompt_len: number of prompt tokens at the start of ``input_ids``.
    """

    def __init__(self, grammar: JpegScanGrammar, prompt_len: int | None = None):
        self.template = grammar.copy()
        self.prompt_len = prompt_len
        self.rows: list[JpegScanGrammar] | None = None
        self.seen: list[int] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        n = input_ids.shape[0]
        if self.rows is None:
            self.rows = [self.template.copy() for _ in range(n)]
            self.seen = [0] * n
            if self.prompt_len is None:
                self.prompt_len = input_ids.shape[1]
        ids = input_ids.tolist()
        masks = []
        for r in range(n):
            g = self.rows[r]
            c = g.compiled
            row = ids[r]
            for pos in range(self.seen[r], len(row)):
                t = row[pos]
                if pos < self.prompt_len and (t == c.eos_id or not 0 <= t < c.V
                                              or c.vocab[t] is None):
                    continue
                if g.finished:
                    break
                g.advance(t)
            self.seen[r] = len(row)
            masks.append(g.allowed_mask())
        mask = torch.stack(masks).to(scores.device)
        V = scores.shape[-1]
        if mask.shape[-1] < V:
            mask = torch.nn.functional.pad(mask, (0, V - mask.shape[-1]), value=False)
        elif mask.shape[-1] > V:
            mask = mask[:, :V]
        return scores.masked_fill(~mask, float("-inf"))
