"""Incremental slice automaton: the grammar of :mod:`avclm.mb_grammar` as an explicit
state machine fed bit by bit, byte by byte and token by token, with exact token masks.

A slice NAL's RBSP is the slice header (fixed bits: what x264 writes at that point of
the stream), ``slice_data()`` of one macroblock, the rbsp_stop_one_bit and zero bits.

**States.** A syntax state is ``(items, luma, chroma)``: ``items`` the syntax still to
read, front first, as small tuples (``("mvd",)``, ``("blk", kind, index)``, ``("lev",
i, total, trailing_ones, suffix_length, max_coeff)``, ...); ``luma`` / ``chroma`` the
TotalCoeff of the 4x4 blocks coded so far (the nC contexts). :class:`MacroblockMachine`
gives the element (a :class:`~avclm.mb_grammar.Vlc` of allowed symbols) a syntax state
reads next and the state after a symbol, memoized. An automaton state is ``(syntax
state, plen, pcode, phase)``: the bits read of the element in progress, and ``phase``
0 inside the macroblock, 1 after it (the stop bit is due), 2 after the stop bit (only
zero bits may follow; the NAL may end). States after the header do not depend on it, so
masks are shared by all slices of the same kind, reference count and alignment. States
are interned per :class:`MacroblockMachine` (an automaton state is ``(id, plen, pcode,
phase, machine)``); a machine that has interned :data:`MACHINE_STATES` states is
replaced for new slices, so memory stays bounded.

Elements hold only allowed symbols, so a state is reachable iff some continuation
completes the slice: masks are exact, sampling never gets stuck. The recursive parser
of :mod:`avclm.mb_grammar` is the reference it is tested against.

Tokens are EBSP bytes: :class:`TokenRbsp` gives each token's RBSP bytes for each
emulation-prevention state it may start in (an ``03`` after two zero bytes is dropped)
and a byte trie over them, so a mask is one walk of the trie from the current state
(a token is allowed iff all its bits are).
"""

from __future__ import annotations

import functools
import gc
import heapq
from collections.abc import Callable

import numpy as np

from . import mb_grammar as g
from .bits import SLICE_I, SLICE_P

MB, NEED_STOP, DONE = 0, 1, 2
#: the trie's and :meth:`SliceAutomaton.step_byte`'s name for an emulation-prevention byte
ESCAPE = 256
#: entries kept per cache (elements, transitions, masks)
MASK_CACHE = 1 << 14
_NO_COUNTS = (0,) * 16
_NO_CHROMA = (0,) * 8
_MISSING = object()


@functools.cache
def fixed_vlc(k: int) -> g.Vlc:
    """u(k): every k-bit value."""
    return g.Vlc({(k, v): v for v in range(1 << k)})


@functools.cache
def zero_vlc(k: int) -> g.Vlc:
    """k zero bits."""
    return g.Vlc({(k, 0): 0})


@functools.cache
def header_vlc(value: int, n: int) -> g.Vlc:
    """The slice header's fixed bits as one code."""
    return g.Vlc({(n, value): 0})


_MB_TYPES = {SLICE_I: (g.I_NXN, *g.I16_DC_TYPES, g.I_PCM),
             SLICE_P: (*g.P_TYPES, *(5 + t for t in (g.I_NXN, *g.I16_DC_TYPES, g.I_PCM)))}
#: the types x264 writes with the canonical profile (``-partitions none``: no P_L0_L0_16x8,
#: P_L0_L0_8x16 or P_8x8; no I_PCM), the default for token masks
CANONICAL_MB_TYPES = {SLICE_I: (g.I_NXN, *g.I16_DC_TYPES),
                      SLICE_P: (g.P_L0_16X16, *(5 + t for t in (g.I_NXN, *g.I16_DC_TYPES)))}
_CBP_CODES = tuple(range(48))
#: coefficients per block kind
_MAX_COEFF = {"dc16": 16, "l4": 16, "ac16": 15, "cdc": 4, "cac": 15}


def _luma_blocks(cbp: int, intra16: bool) -> tuple:
    kind = "ac16" if intra16 else "l4"
    return tuple(("blk", kind, b) for b in range(16) if cbp & (1 << (b >> 2)))


def _residual_items(cbp: int, intra16: bool) -> tuple:
    items = (("blk", "dc16", 0),) if intra16 else ()
    items += _luma_blocks(cbp, intra16)
    if cbp >> 4:
        items += (("blk", "cdc", 0), ("blk", "cdc", 1))
    if cbp >> 4 & 2:
        items += tuple(("blk", "cac", c * 4 + b) for c in range(2) for b in range(4))
    return items


class MacroblockMachine:
    """Elements and transitions of the macroblock layer in one context (slice kind,
    active references, slice data start bit modulo 8, ``canonical``: only the mb_types
    of :data:`CANONICAL_MB_TYPES`), memoized."""

    def __init__(self, kind: int, refs: int, start_mod8: int, canonical: bool = False):
        self.kind, self.refs, self.start_mod8 = kind, refs, start_mod8
        self.mb_types = (CANONICAL_MB_TYPES if canonical else _MB_TYPES)[kind]
        self.mvd = g.se_vlc(-g.MAX_MVD, g.MAX_MVD)
        # syntax states are interned: id -> state, its element; (id, symbol) -> id
        self._ids: dict[tuple, int] = {}
        self.states: list[tuple] = []
        self.elements: list[g.Vlc | None] = []
        #: (id, symbol) -> id of the state after it (what :meth:`after_id` memoizes)
        self.after: dict[tuple, int] = {}
        #: (automaton state, byte) -> automaton state or None (SliceAutomaton.step_byte)
        self.byte_steps: dict[tuple, tuple | None] = {}
        #: id -> the plainest rest of the macroblock from that state (plainest_completion)
        self.plain: dict[int, tuple[int, int]] = {}
        #: id -> a lower bound of the bits left in the macroblock (_least_bits), and its
        #: part per syntax item (a block's with its nC context)
        self.least: dict[int, int] = {}
        self.item_bits: dict[tuple, int] = {}

    def intern(self, state: tuple) -> int:
        """The id of syntax ``state`` (its element is computed once)."""
        sid = self._ids.get(state)
        if sid is None:
            sid = self._ids[state] = len(self.states)
            self.states.append(state)
            self.elements.append(self._element(state))
        return sid

    def after_id(self, sid: int, sym) -> int:
        """The id of the syntax state after reading ``sym`` in state ``sid``."""
        key = (sid, sym)
        got = self.after.get(key)
        if got is None:
            got = self.after[key] = self.intern(self._next(self.states[sid], sym))
        return got

    def first_items(self) -> tuple:
        return (("skip",),) if self.kind == SLICE_P else (("mbtype",),)

    # ------------------------------------------------------------------ elements
    def _element(self, state: tuple) -> g.Vlc | None:
        items, luma, chroma = state
        if not items:
            return None
        it = items[0]
        op = it[0]
        if op == "hdr":
            return header_vlc(it[1], it[2])
        if op == "skip":
            return g.ue_vlc((0, 1))
        if op == "mbtype":
            return g.ue_vlc(self.mb_types)
        if op == "ref":
            return g.te_vlc(self.refs - 1)
        if op == "mvd":
            return self.mvd
        if op == "sub":
            return g.ue_vlc((0, 1, 2, 3))
        if op == "i4":
            b, modes = it[1], it[2]
            left, top = g.luma_neighbours(b)
            pred = 2 if left is None or top is None else min(modes[left], modes[top])
            return g.intra4x4_mode_vlc(pred, left is not None, top is not None)
        if op == "chroma":
            return g.ue_vlc((0,))
        if op == "cbp":
            return g.ue_vlc(_CBP_CODES)
        if op == "qp":
            return g.se_vlc(-26, 25)
        if op == "zeros":
            return zero_vlc(it[1])
        if op == "pcm":
            return fixed_vlc(8)
        if op == "blk":
            return self._coeff_token(it[1], it[2], luma, chroma)
        if op == "t1":
            return fixed_vlc(it[1])
        if op == "lev":
            return g.level_prefix_vlc()
        if op == "lsuf":
            return fixed_vlc(it[7])
        if op == "tz":
            return g.total_zeros_vlc(it[1], it[2])
        if op == "run":
            return g.run_before_vlc(it[2])
        raise AssertionError(op)

    @staticmethod
    def _coeff_token(kind: str, idx: int, luma: tuple, chroma: tuple) -> g.Vlc:
        if kind == "cdc":
            return g.coeff_token_vlc(-1, 4)
        if kind == "cac":
            c, b = divmod(idx, 4)
            counts = chroma[4 * c:4 * c + 4]  # (indexed like nc_from's dict)
            nc = g.nc_from(counts, b - 1 if b & 1 else None, b - 2 if b >= 2 else None)
            return g.coeff_token_vlc(nc, 15)
        if kind == "dc16":
            return g.coeff_token_vlc(0, 16)
        nc = g.nc_from(luma, *g.luma_neighbours(idx))
        return g.coeff_token_vlc(nc, 15 if kind == "ac16" else 16)

    # ------------------------------------------------------------------ transitions
    def _next(self, state: tuple, sym) -> tuple:
        items, luma, chroma = state
        it, rest = items[0], items[1:]
        op = it[0]
        if op == "hdr":
            return self.first_items() + rest, luma, chroma
        if op == "skip":
            return (() if sym == 1 else (("mbtype",),) + rest), luma, chroma
        if op == "mbtype":
            return self._expand_mb_type(sym) + rest, luma, chroma
        if op == "sub":
            subs = it[1] + (sym,)
            if len(subs) < 4:
                return (("sub", subs),) + rest, luma, chroma
            refs = (("ref",),) * 4 if self.refs > 1 else ()
            mvds = (("mvd",),) * (2 * sum(g.SUB_PARTS[s] for s in subs))
            return refs + mvds + (("cbp", False),) + rest, luma, chroma
        if op == "i4":
            b, modes = it[1], it[2] + (sym,)
            if b < 15:
                return (("i4", b + 1, modes),) + rest, luma, chroma
            return (("chroma",), ("cbp", True)) + rest, luma, chroma
        if op == "cbp":
            cbp = (g.CBP_INTRA if it[1] else g.CBP_INTER)[sym]
            if not cbp:
                return rest, luma, chroma
            return (("qp",),) + _residual_items(cbp, False) + rest, luma, chroma
        if op == "pcm":
            return ((("pcm", it[1] - 1),) if it[1] > 1 else ()) + rest, luma, chroma
        if op == "blk":
            return self._after_coeff_token(it, sym, rest, luma, chroma)
        if op == "lev":
            return self._after_level_prefix(it, sym, rest), luma, chroma
        if op == "lsuf":
            _, i, total, t1, sl, maxc, prefix, _size = it
            return self._after_level(i, total, t1, sl, maxc, prefix, sym, rest), luma, chroma
        if op == "tz":
            total = it[1]
            if sym and total > 1:
                return (("run", total - 1, sym),) + rest, luma, chroma
            return rest, luma, chroma
        if op == "run":
            k, zeros_left = it[1] - 1, it[2] - sym
            if k and zeros_left:
                return (("run", k, zeros_left),) + rest, luma, chroma
            return rest, luma, chroma
        # ref, mvd, chroma, qp, zeros, t1: the value changes nothing that follows
        return rest, luma, chroma

    def _expand_mb_type(self, mb_type: int) -> tuple:
        refs1 = (("ref",),) if self.refs > 1 else ()
        if self.kind == SLICE_P:
            if mb_type == g.P_8X8:
                return (("sub", ()),)
            if mb_type < 5:
                parts = 1 if mb_type == g.P_L0_16X16 else 2
                return refs1 * parts + (("mvd",),) * (2 * parts) + (("cbp", False),)
            mb_type -= 5
        # bits before I_PCM's alignment: mb_skip_run (P: 1 bit) and mb_type (9 bits)
        if mb_type == g.I_PCM:
            used = self.start_mod8 + 9 + (1 if self.kind == SLICE_P else 0)
            align = -used % 8
            return ((("zeros", align),) if align else ()) + (("pcm", 384),)
        if mb_type == g.I_NXN:
            return (("i4", 0, ()),)
        k = (mb_type - 1) // 4
        cbp = (k % 3) << 4 | (15 if k >= 3 else 0)
        return (("chroma",), ("qp",)) + _residual_items(cbp, True)

    def _after_coeff_token(self, it, sym, rest, luma, chroma):
        _, kind, idx = it
        total, t1 = sym
        maxc = _MAX_COEFF[kind]
        if kind in ("l4", "ac16") and total:
            luma = luma[:idx] + (total,) + luma[idx + 1:]
        elif kind == "cac" and total:
            chroma = chroma[:idx] + (total,) + chroma[idx + 1:]
        if total == 0:
            return rest, luma, chroma
        body = (("t1", t1),) if t1 else ()
        if t1 < total:
            body += (("lev", t1, total, t1, 1 if total > 10 and t1 < 3 else 0, maxc),)
        else:
            body += self._tail(total, maxc)
        return body + rest, luma, chroma

    @staticmethod
    def _tail(total: int, maxc: int) -> tuple:
        return (("tz", total, maxc),) if total < maxc else ()

    def _after_level_prefix(self, it, prefix, rest):
        _, i, total, t1, sl, maxc = it
        size = g.level_suffix_size(prefix, sl)
        if size:
            return (("lsuf", i, total, t1, sl, maxc, prefix, size),) + rest
        return self._after_level(i, total, t1, sl, maxc, prefix, 0, rest)

    def _after_level(self, i, total, t1, sl, maxc, prefix, suffix, rest):
        code = (min(15, prefix) << sl) + suffix
        if prefix >= 15 and sl == 0:
            code += 15
        if i == t1 and t1 < 3:
            code += 2
        magnitude = (code + 2) >> 1
        if sl == 0:
            sl = 1
        if magnitude > (3 << (sl - 1)) and sl < 6:
            sl += 1
        if i + 1 < total:
            return (("lev", i + 1, total, t1, sl, maxc),) + rest
        return self._tail(total, maxc) + rest


_MACHINES: dict[tuple, MacroblockMachine] = {}
#: syntax states a machine interns before new slices get a fresh machine (states of
#: slices begun earlier keep theirs: an automaton state holds its machine)
MACHINE_STATES = 1 << 17


def macroblock_machine(kind: int, refs: int, start_mod8: int,
                       canonical: bool = False) -> MacroblockMachine:
    """The current machine of a context (a fresh one once the last holds
    :data:`MACHINE_STATES` states, so memory stays bounded in long generations)."""
    key = (kind, refs, start_mod8, canonical)
    m = _MACHINES.get(key)
    if m is None or len(m.states) >= MACHINE_STATES:
        m = _MACHINES[key] = MacroblockMachine(*key)
    return m


def fresh_machines() -> None:
    """Give slices begun from now on fresh machines (those begun earlier keep theirs):
    what a full machine does, on demand (a test that counts the masks one walk builds
    must not see a machine filled by earlier work replaced halfway)."""
    _MACHINES.clear()


_TABLE_WALKS: dict[tuple, tuple | None] = {}


def table_walk(table: g.Vlc, plen: int, pcode: int, value: int, n: int) -> tuple | None:
    """Read ``n`` bits (``value``) into ``table`` after the partial code (plen, pcode):
    ``(True, symbol, bits used)`` when a code completes, ``(False, plen, pcode)`` when
    the bits end inside one, None when no code continues them. Memoized on the bits
    the table can read: a code completes or fails within ``table.max_len - plen`` bits,
    so only those lead the key (tokens sharing them share the entry)."""
    w = table.max_len - plen
    if w < n:
        value, n = value >> (n - w), w
    key = (id(table), plen, pcode, value, n)
    got = _TABLE_WALKS.get(key, False)
    if got is not False:
        return got
    got = None
    codes, prefixes = table.codes, table.prefixes
    for i in range(n):
        plen, pcode = plen + 1, (pcode << 1) | ((value >> (n - 1 - i)) & 1)
        sym = codes.get((plen, pcode))
        if sym is not None:
            got = (True, sym, i + 1)
            break
        if (plen, pcode) not in prefixes:
            break
    else:
        got = (False, plen, pcode)
    if len(_TABLE_WALKS) >= 1 << 20:
        _TABLE_WALKS.clear()
    _TABLE_WALKS[key] = got
    return got


class SliceAutomaton:
    """The automaton of one slice header (``header``: RBSP bits (int, count)) in one
    macroblock context (``canonical``: only x264's mb_types); states ``(syntax state id,
    plen, pcode, phase, machine)`` as in the module docstring (ids from the machine's
    :meth:`MacroblockMachine.intern`)."""

    def __init__(self, header: tuple[int, int], ctx: g.MacroblockContext,
                 canonical: bool = False):
        hv, hn = header
        self.context = (ctx.kind, ctx.num_ref_idx_active, ctx.data_start_bit % 8, canonical)
        self._first = (("hdr", hv, hn),) if hn else macroblock_machine(*self.context).first_items()

    @property
    def start(self) -> tuple:
        """The state before the slice header (in the context's current machine)."""
        m = macroblock_machine(*self.context)
        return m.intern((self._first, _NO_COUNTS, _NO_CHROMA)), 0, 0, MB, m

    def step_byte(self, state: tuple, x: int) -> tuple | None:
        """:meth:`step_bits` for one byte, memoized per machine. ``x`` == :data:`ESCAPE`
        is an emulation-prevention byte: no bits, but the byte after it must be <= 3, so it
        is a dead end unless the state takes such a byte (never after the stop bit: an
        escape cannot end a NAL, and zero bits cannot be followed by a one there)."""
        if x == ESCAPE:
            if state[3] == DONE or all(self.step_byte(state, b) is None for b in range(4)):
                return None
            return state
        cache = state[4].byte_steps
        key = (state, x)
        got = cache.get(key, False)
        if got is False:
            if len(cache) >= 1 << 18:
                cache.clear()
            got = cache[key] = self.step_bits(state, x, 8)
        return got

    def step_bits(self, state: tuple, value: int, n: int) -> tuple | None:
        """The state after ``n`` more bits (``value``, MSB first), or None if no valid
        slice continues with them."""
        return _walk_bits(state, value, n, False)

    @staticmethod
    def accepts_bits(state: tuple, value: int, n: int) -> bool:
        """Whether ``n`` more bits (``value``, MSB first) continue a valid slice from
        ``state``: ``step_bits(...) is not None``, without building the state after bits
        that end with a syntax element (every state continues to a complete slice)."""
        return _walk_bits(state, value, n, True) is not None


def _walk_bits(state: tuple, value: int, n: int, check: bool) -> tuple | bool | None:
    """:meth:`SliceAutomaton.step_bits`; ``check``: True instead of the state when the
    bits end with a completed element. (The hot path of a lazy mask's single-token
    check: the memos of :func:`table_walk` and :meth:`MacroblockMachine.after_id` are
    read inline, the functions called only on a miss.)"""
    sid, plen, pcode, phase, m = state
    elements, after, walks = m.elements, m.after, _TABLE_WALKS
    while n:
        if phase == MB:
            table = elements[sid]
            w = table.max_len - plen  # (the window table_walk memoizes on)
            key = ((id(table), plen, pcode, value >> (n - w) & ((1 << w) - 1), w) if w < n
                   else (id(table), plen, pcode, value & ((1 << n) - 1), n))
            got = walks.get(key, False)
            if got is False:
                got = table_walk(table, plen, pcode, value & ((1 << n) - 1), n)
            if got is None:
                return None
            if not got[0]:
                return sid, got[1], got[2], MB, m
            n -= got[2]
            if check and not n:
                return True
            nsid = after.get((sid, got[1]))
            sid = m.after_id(sid, got[1]) if nsid is None else nsid
            plen = pcode = 0
            if elements[sid] is None:
                phase = NEED_STOP
        elif phase == NEED_STOP:
            if not (value >> (n - 1)) & 1:
                return None
            phase, n = DONE, n - 1
        else:
            return None if value & ((1 << n) - 1) else (sid, plen, pcode, DONE, m)
    return sid, plen, pcode, phase, m


#: codes per syntax element that :func:`plainest_completion` weighs, at least (each
#: element's shortest ones and those as long as they: see :func:`_short_codes`)
PLAIN_CODES = 4
#: syntax states the search for a completion shorter than the greedy one expands at most
PLAIN_EXPANSIONS = 100
_SHORT_CODES: dict[tuple, tuple] = {}


def plainest_completion(state: tuple, bit: int = 0) -> tuple[int, int]:
    """RBSP bits ``(value, n)`` that finish the slice from automaton ``state`` the
    plainest way: the rest of the macroblock, the rbsp_stop_one_bit and the zero bits up
    to the next byte boundary. ``bit``: bits of the current byte read before ``state``
    (0, the default: a state reached after whole bytes, as after a token).

    The rest is short (a greedy choice, then an A* search over syntax states for a
    shorter one, given up after :data:`PLAIN_EXPANSIONS` states; from x264's slices cut
    anywhere, never longer than what x264 wrote), and so plain: a block that may still
    be empty codes no coefficient (TotalCoeff 0 is a block's shortest code), motion
    vector differences are 0, coded_block_pattern 0 where that is shorter than coding
    the blocks. At a state that is already complete (after the stop bit, at a byte
    boundary) it is ``(0, 0)``. What
    :meth:`avclm.nal_masks.NalConstraint.finish_early` writes when the model would end a
    slice that cannot end yet."""
    sid, plen, pcode, phase, m = state
    if phase == DONE:  # (only zero bits may follow: those up to the byte boundary)
        return 0, -bit % 8
    value = n = 0
    if phase == MB:
        if not plen and sid in m.plain:
            value, n = m.plain[sid]
        else:
            value, n = _plain_macroblock(m, sid, plen, pcode)
    value, n = (value << 1) | 1, n + 1  # rbsp_stop_one_bit
    pad = -(bit + n) % 8
    return value << pad, n + pad


def _plain_macroblock(m: MacroblockMachine, sid: int, plen: int,
                      pcode: int) -> tuple[int, int]:
    """:func:`plainest_completion`'s bits from syntax state ``sid`` with the partial code
    (plen, pcode) to the end of the macroblock; memoized per machine for states at a
    code boundary."""
    greedy = _greedy_macroblock(m, sid, plen, pcode)
    got = _shortest_macroblock(m, sid, plen, pcode, greedy[1]) or greedy
    if not plen:
        if len(m.plain) >= MASK_CACHE:
            m.plain.clear()
        m.plain[sid] = got
    return got


def _shortest_macroblock(m: MacroblockMachine, sid: int, plen: int, pcode: int,
                         bound: int) -> tuple[int, int] | None:
    """Bits to the end of the macroblock shorter than ``bound``, the shortest such: an A*
    search over syntax states (each element's :data:`PLAIN_CODES` shortest codes,
    :func:`_least_bits` as the estimate); None when there are none or after
    :data:`PLAIN_EXPANSIONS` states."""
    heap = [(0, 0, 0, sid, plen, pcode, 0)]
    seen, pushed = set(), 0
    while heap and len(seen) < PLAIN_EXPANSIONS:
        _, cost, _, s, pl, pc, value = heapq.heappop(heap)
        if m.elements[s] is None:
            return value, cost
        if (s, pl) in seen:  # (pl > 0 only at the start: one partial code)
            continue
        seen.add((s, pl))
        for k, bits, sym in _short_codes(m.elements[s], pl, pc):
            t = m.after_id(s, sym)
            f = cost + k + _least_bits(m, t)
            if f < bound:
                pushed += 1
                heapq.heappush(heap, (f, cost + k, pushed, t, 0, 0, value << k | bits))
    return None


def _greedy_macroblock(m: MacroblockMachine, sid: int, plen: int,
                       pcode: int) -> tuple[int, int]:
    """Bits to the end of the macroblock, at each element the code with the fewest bits
    plus :func:`_least_bits` after it (linear in the syntax left; the bound of
    :func:`_shortest_macroblock`, and the answer where it finds nothing shorter)."""
    value = n = 0
    while m.elements[sid] is not None:
        best = None
        for k, bits, sym in _short_codes(m.elements[sid], plen, pcode):
            nxt = m.after_id(sid, sym)
            left = _least_bits(m, nxt)
            cost = (k + left, left)  # (a tie: the code that leaves less syntax)
            if best is None or cost < best[0]:
                best = cost, k, bits, nxt
        _, k, bits, sid = best
        value, n, plen, pcode = value << k | bits, n + k, 0, 0
    return value, n


def _least_bits(m: MacroblockMachine, sid: int) -> int:
    """A lower bound of the bits that finish the macroblock from syntax state ``sid``:
    each item left at its element's shortest code, blocks with the nC contexts of now
    (blocks coded later can only raise them), and an item that stands for a run of
    elements (the intra 4x4 modes, a block's levels, I_PCM samples) one bit for each of
    the rest."""
    got = m.least.get(sid)
    if got is not None:
        return got
    items, luma, chroma = m.states[sid]
    total = 0
    item_bits = m.item_bits
    for it in items:
        key = (it, luma, chroma) if it[0] == "blk" else it  # (only a block's nC varies)
        got = item_bits.get(key)
        if got is None:
            table = m._element(((it,), luma, chroma))
            got = min(n for n, _ in table.codes) + _run_rest(it)
            if len(item_bits) >= MASK_CACHE:
                item_bits.clear()
            item_bits[key] = got
        total += got
    if len(m.least) >= MASK_CACHE:
        m.least.clear()
    m.least[sid] = total
    return total


def _run_rest(it: tuple) -> int:
    """Elements (of at least one bit) an item brings after its first one: the other
    intra 4x4 modes, intra_chroma_pred_mode and coded_block_pattern; a block's other
    levels and its total_zeros; the other I_PCM samples (8 bits each)."""
    op = it[0]
    if op == "i4":
        return 15 - it[1] + 2
    if op == "lev":
        _, i, total, _t1, _sl, maxc = it
        return total - i - 1 + (total < maxc)
    if op == "pcm":
        return 8 * (it[1] - 1)
    return 0


def _short_codes(table: g.Vlc, plen: int, pcode: int) -> tuple:
    """(bits left, their value, symbol) of the codes of ``table`` that continue the
    partial code (plen, pcode), shortest first: those no longer than the
    :data:`PLAIN_CODES`-th shortest (all of that length: a table may give a dozen codes
    the same length, the plainest symbol among them)."""
    key = (id(table), plen, pcode)
    got = _SHORT_CODES.get(key)
    if got is None:
        rest = sorted((n - plen, v & ((1 << (n - plen)) - 1), sym)
                      for (n, v), sym in table.codes.items()
                      if n > plen and v >> (n - plen) == pcode)
        cut = rest[min(PLAIN_CODES, len(rest)) - 1][0]
        if len(_SHORT_CODES) >= MASK_CACHE:
            _SHORT_CODES.clear()
        got = _SHORT_CODES[key] = tuple(r for r in rest if r[0] <= cut)
    return got


class TokenRbsp:
    """Per tokenizer: each token's RBSP bytes when it starts after ``z`` zero bytes
    (0, 1, 2 or more), an emulation-prevention byte written as :data:`ESCAPE`, in a
    byte trie: ``trie[z]`` nodes are dicts ``byte -> [child node, token ids ending
    there]``."""

    def __init__(self, token_bytes: list[bytes | None]):
        self.vocab_size = len(token_bytes)
        self.token_bytes = token_bytes
        self._bits: list[list | None] = [None, None, None]
        self.trie: list[dict] = []
        for z0 in range(3):
            root: dict = {}
            for t, b in enumerate(token_bytes):
                if not b:
                    continue
                node, z, path = root, z0, None
                for x in b:
                    if z >= 2 and x == 3:  # emulation_prevention_three_byte
                        z, x = 0, ESCAPE
                    else:
                        z = z + 1 if x == 0 else 0
                    path = node.setdefault(x, [{}, []])
                    node = path[0]
                path[1].append(t)
            self.trie.append(root)
        #: the same tries bit by bit (what :func:`allowed_tokens` walks)
        self.bit_trie = [bit_trie(root) for root in self.trie]
        self._walks: dict = {}
        self._tails: dict = {}

    def bits(self, z: int) -> list[tuple[int, int] | None]:
        """Per token, its RBSP bits ``(value, count)`` (MSB first) when it starts after
        ``z`` zero bytes (0, 1, 2 or more) and holds no emulation-prevention byte there;
        None for a token with one; ``(0, 0)`` for a token without bytes. Computed once."""
        got = self._bits[z]
        if got is None:
            got = self._bits[z] = [_plain_bits(b, z) for b in self.token_bytes]
        return got

    def element_walk(self, node: list, table: g.Vlc, plen: int, pcode: int) -> tuple:
        """The bits below bit-trie ``node`` read into ``table`` after the partial code
        (plen, pcode), until each path completes a code or leaves the table:
        ``(token ids ending inside the code or with it, ((node after a complete code,
        symbol), ...), ((escape node, plen, pcode), ...))`` (the escapes at byte
        boundaries inside the code; whether one is allowed depends on what follows).
        Memoized (bounded); the key holds ``table`` itself, so it stays alive."""
        key = (id(node), table, plen, pcode)
        got = self._walks.get(key)
        if got is not None:
            return got
        ends: list[int] = []
        done, escapes = [], []
        codes, prefixes, missing = table.codes, table.prefixes, _MISSING
        stack = [(node, plen, pcode)]
        while stack:
            nd, pl, pc = stack.pop()
            if nd[3] is not None:
                escapes.append((nd[3], pl, pc))
            for b in (0, 1):
                child = nd[b]
                if child is None:
                    continue
                code = (pl + 1, (pc << 1) | b)
                sym = codes.get(code, missing)
                if sym is not missing:
                    ends.extend(child[2])
                    done.append((child, sym))
                elif code in prefixes:
                    ends.extend(child[2])
                    stack.append((child, code[0], code[1]))
        got = (tuple(ends), tuple(done), tuple(escapes))
        if len(self._walks) >= 1 << 18:
            self._walks.clear()
        self._walks[key] = got
        return got

    def tail_walk(self, node: list, phase: int) -> tuple:
        """Token ids below ``node`` whose bits are the rbsp_stop_one_bit and zero bits
        (``phase`` NEED_STOP) or zero bits only (DONE); no escape fits there."""
        key = (id(node), phase)
        got = self._tails.get(key)
        if got is None:
            ends: list[int] = []
            nd = node[1] if phase == NEED_STOP else node[0]
            while nd is not None:
                ends.extend(nd[2])
                nd = nd[0]
            got = self._tails[key] = tuple(ends)
        return got


def _plain_bits(b: bytes | None, z: int) -> tuple[int, int] | None:
    """``b``'s bits (value, count) if, after ``z`` zero bytes, it has no
    emulation-prevention byte (an ``03`` after two zero bytes); else None."""
    if not b:
        return 0, 0
    for x in b:
        if z >= 2 and x == 3:
            return None
        z = z + 1 if x == 0 else 0
    return int.from_bytes(b, "big"), 8 * len(b)


def bit_trie(root: dict) -> list:
    """A byte trie (``byte -> [child, token ids ending there]``) as a binary trie of
    nodes ``[child for bit 0, child for bit 1, token ids ending here, escape child]``:
    a byte boundary node holds the tokens ending there and, when some token has an
    emulation-prevention byte there, the boundary node after it (no bits)."""
    node: list = [None, None, (), None]
    for x, (child, ends) in root.items():
        end = bit_trie(child)
        end[2] = tuple(ends)
        if x == ESCAPE:
            node[3] = end
            continue
        cur = node
        for i in range(7, 0, -1):
            b = (x >> i) & 1
            if cur[b] is None:
                cur[b] = [None, None, (), None]
            cur = cur[b]
        cur[x & 1] = end
    return node


@functools.lru_cache(maxsize=8)
def token_rbsp(token_bytes: tuple) -> TokenRbsp:
    return TokenRbsp(list(token_bytes))


def allowed_tokens(auto: SliceAutomaton, state: tuple, rbsp: TokenRbsp, z: int) -> np.ndarray:
    """Bool[vocab]: tokens all of whose bits continue a valid slice from ``state`` when
    the bytes before end with ``z`` zero bytes (emulation-prevention rules are not
    checked here). One walk of the tokens' binary trie in which the bits inside one
    syntax element are a memoized :meth:`TokenRbsp.element_walk` (shared by every state
    reading that element): only completed elements step the syntax state."""
    sid, plen, pcode, phase, m = state
    elements, after = m.elements, m.after_id
    hits: list[int] = []
    stack = [(rbsp.bit_trie[min(z, 2)], sid, plen, pcode, phase)]
    pop, push, extend = stack.pop, stack.append, hits.extend
    walk = rbsp.element_walk
    while stack:
        node, sid, plen, pcode, phase = pop()
        if phase != MB:
            extend(rbsp.tail_walk(node, phase))
            continue
        ends, done, escapes = walk(node, elements[sid], plen, pcode)
        extend(ends)
        for child, sym in done:
            nsid = after(sid, sym)
            push((child, nsid, 0, 0, MB if elements[nsid] is not None else NEED_STOP))
        for esc, pl, pc in escapes:
            if auto.step_byte((sid, pl, pc, MB, m), ESCAPE) is not None:
                extend(esc[2])
                push((esc, sid, pl, pc, MB))
    ok = np.zeros(rbsp.vocab_size, bool)
    ok[hits] = True
    return ok


def _rbsp_of(body: bytes) -> bytes:
    """EBSP bytes (starting after a non-zero byte) -> RBSP bytes."""
    out, z = bytearray(), 0
    for x in body:
        if z >= 2 and x == 3:
            z = 0
            continue
        z = z + 1 if x == 0 else 0
        out.append(x)
    return bytes(out)


def _escaped_token_ok(auto: SliceAutomaton, state: tuple, zeros: int, token: bytes) -> bool:
    """Whether ``token`` (with an emulation-prevention byte) continues the slice from
    ``state`` after ``zeros`` zero bytes: its bytes one by one (an ``03`` after two zero
    bytes is :data:`ESCAPE`)."""
    for x in token:
        if zeros >= 2 and x == 3:
            zeros, x = 0, ESCAPE
        else:
            zeros = zeros + 1 if x == 0 else 0
        state = auto.step_byte(state, x)
        if state is None:
            return False
    return True


class SliceGrammar:
    """Token masks over slice data for one tokenizer and one stream's facts: automata per
    slice header (made on first use; canonical mb_types only), masks per automaton state,
    the opener check for tokens that start a NAL. Caches are bounded (:data:`MASK_CACHE`)."""

    def __init__(self, token_bytes: list[bytes | None], pps):
        self.token_bytes = token_bytes
        self.pps = pps
        self.rbsp = TokenRbsp(token_bytes)
        self.automata: dict[tuple, SliceAutomaton] = {}
        self.masks: dict[tuple, np.ndarray] = {}
        self.openers: dict[tuple, np.ndarray] = {}
        self._body_bits: dict[bool, list] = {}
        self._body_by_token: dict[bool, dict] = {}
        self._after_header: dict[tuple, tuple | None] = {}  # automaton key -> state

    def automaton(self, fields, header: tuple[int, int]) -> tuple[tuple, SliceAutomaton]:
        """(key, automaton) of a slice with these header ``fields`` and bits."""
        ctx = g.MacroblockContext.of(fields, self.pps, header[1])
        key = (header, ctx)
        auto = self.automata.get(key)
        if auto is None:
            if len(self.automata) >= MASK_CACHE:
                self.automata.clear()
                self._after_header.clear()
            auto = self.automata[key] = SliceAutomaton(header, ctx, canonical=True)
        return key, auto

    def mask(self, key: tuple, state: tuple, z: int) -> np.ndarray:
        """Tokens whose bits continue the slice of automaton ``key`` from ``state``."""
        auto = self.automata[key]
        mkey = (state, min(z, 2))
        got = self.masks.get(mkey)
        if got is None:
            if len(self.masks) >= MASK_CACHE:
                self.masks.clear()
            collecting = gc.isenabled()
            gc.disable()  # the walk makes many small tuples that all live on: no cycles
            try:
                got = self.masks[mkey] = allowed_tokens(auto, state, self.rbsp, z)
            finally:
                if collecting:
                    gc.enable()
        return got

    def token_ok(self, key: tuple, state: tuple, z: int, token_id: int) -> bool:
        """``mask(key, state, z)[token_id]``, from the token's own bits (see
        :meth:`token_check`)."""
        return bool(self.token_check(key, state, z)(token_id))

    def token_check(self, key: tuple, state: tuple, z: int) -> Callable[[int], bool]:
        """``mask(key, state, z)[token_id]`` as a function of ``token_id``, from the
        token's own bits: what an exact lazy mask checks instead of walking the whole
        vocabulary (the cached mask when there is one). A token without an
        emulation-prevention byte (after ``z`` zero bytes) steps its RBSP bits through
        the automaton in one :meth:`SliceAutomaton.step_bits` (bits precomputed,
        :meth:`TokenRbsp.bits`); one with an escape goes byte by byte."""
        zeros = min(z, 2)
        mask = self.masks.get((state, zeros))
        if mask is not None:
            return mask.__getitem__
        bits = self.rbsp.bits(zeros)

        def check(token_id: int) -> bool:
            b = bits[token_id]
            if b is None:  # (the automaton looked up only here: its key hashes a dataclass)
                return _escaped_token_ok(self.automata[key], state, zeros,
                                         self.token_bytes[token_id])
            return b[1] > 0 and _walk_bits(state, b[0], b[1], True) is not None

        return check

    def body_ok(self, key: tuple, opener: bool) -> np.ndarray:
        """Tokens fine as the first token of this slice NAL as far as the slice grammar
        goes (``opener``: tokens that start with the start code; else tokens that start
        with the NAL header byte): no slice bytes after the NAL header byte, or bytes the
        automaton accepts from its start. The automaton starts with the slice header's
        fixed bits, so a token's bits (:meth:`_bodies`, once per tokenizer) are compared
        with those and only a token longer than the header steps the automaton."""
        got = self.openers.get((key, opener))
        if got is None:
            got = np.ones(len(self.token_bytes), bool)
            for t, v, n in self._bodies(opener):
                if not self._body_fits(key, v, n):
                    got[t] = False
            self.openers[(key, opener)] = got
        return got

    def body_ok_token(self, key: tuple, opener: bool, token_id: int) -> bool:
        """``body_ok(key, opener)[token_id]`` from that token's bits alone (the cached
        mask when there is one): what a single-token check reads at a NAL boundary."""
        got = self.openers.get((key, opener))
        if got is not None:
            return bool(got[token_id])
        vn = self._body_index(opener).get(token_id)
        return True if vn is None else self._body_fits(key, *vn)

    def _body_fits(self, key: tuple, v: int, n: int) -> bool:
        """Whether ``n`` RBSP bits ``v`` after the NAL header byte agree with the slice
        header's fixed bits of automaton ``key`` and, beyond them, continue it."""
        auto = self.automata[key]
        hv, hn = key[0]
        if n <= hn:
            return v == hv >> (hn - n)
        if v >> (n - hn) != hv:
            return False
        after = self._after_header.get(key)
        if after is None:
            after = self._after_header[key] = (auto.step_bits(auto.start, hv, hn) if hn
                                               else auto.start)
        return auto.step_bits(after, v & ((1 << (n - hn)) - 1), n - hn) is not None

    def _body_index(self, opener: bool) -> dict[int, tuple[int, int]]:
        """:meth:`_bodies` as ``token id -> (value, bit count)`` (computed once)."""
        got = self._body_by_token.get(opener)
        if got is None:
            got = self._body_by_token[opener] = {t: (v, n) for t, v, n in self._bodies(opener)}
        return got

    def _bodies(self, opener: bool) -> list[tuple[int, int, int]]:
        """``(token id, RBSP value, bit count)`` of each token's bytes after the NAL
        header byte (``opener``: after its start code and the NAL header byte) for the
        tokens that have some (and, ``opener``, start with a start code). Computed once."""
        got = self._body_bits.get(opener)
        if got is None:
            got = self._body_bits[opener] = []
            for t, b in enumerate(self.token_bytes):
                if not b:
                    continue
                if opener:
                    lz = len(b) - len(b.lstrip(b"\x00"))
                    if lz >= len(b) or b[lz] != 1:
                        continue
                    b = b[lz + 1:]
                rb = _rbsp_of(b[1:])
                if rb:
                    got.append((t, int.from_bytes(rb, "big"), 8 * len(rb)))
        return got
