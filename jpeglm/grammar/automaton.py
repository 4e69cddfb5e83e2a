"""The vocabulary-independent scan automaton: bit tables and byte tables of one layout.

A *k-free state* is ``(phase, block, zrl, x)``: the phase (DC code, DC extra bits, AC
code, AC extra bits, padding to the end of the MCU), the 8x8 block of the MCU, whether a
ZRL was just written and the position inside the current Huffman code or extra bits.
The coefficient index ``k`` (0..64) and the luma DC predictor travel beside the state
and are handled by the tables symbolically (see :class:`ScanAutomaton`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np

from ..huffman import AC_CHROMA, AC_LUMA, DC_CHROMA, DC_LUMA, INVALID, HuffmanTrie
from .bitsets import bits_matrix, narrow_ints
from .header import ScanLayout

# Phases of a bit-level (k-free) state (phase, block, zrl, x)
PH_DC, PH_DCX, PH_AC, PH_ACX, PH_PAD = range(5)
# Byte-boundary cores (sid, k, ff) use sid > 0 for scan states and these for the rest
S_MARK, S_END, S_FIN = -1, -2, -3   # FF of a marker written / EOI written / EOS emitted
S_HDR = -100                         # header byte ``pos`` is due: sid = S_HDR - pos

#: a ZRL needs k + 16 <= 63 (so that a non-zero coefficient still fits after it)
K_SAFE = 47
#: "no limit on k" in the k thresholds (k never exceeds 64)
NO_LIMIT = 127


class ScanAutomaton:
    """Bit- and byte-level transition tables of the entropy-coded scan for one layout.

    Independent of the vocabulary (shared through :func:`scan_automaton`). States are
    numbered 1..``n_states - 1`` (0: the dead sink); ``states[sid]`` is the k-free
    state tuple. ``pad_state`` pads the MCU to a byte boundary, ``first_dc_state`` starts
    an MCU.

    The luma DC predictor travels as an *index* ``p = predictor + luma_dc_bound`` in
    ``0 .. n_preds - 1``; a set of predictors is a Python-int bitset over these indices
    (``all_preds``: every one). Predictor *updates* are ``(mode, value)``: mode 0 keeps
    it, 1 shifts it by ``value``, 2 sets the index to ``value``.

    *Bit tables*, int64 arrays [2 * n_states] indexed ``2 * state + bit``:

    * ``bit_next2``: 2 * next state (0: the bit is never valid);
    * ``bit_kmax``: the bit is valid iff ``k <= bit_kmax``;
    * ``bit_kmul``, ``bit_kadd``: then ``k = k * bit_kmul + bit_kadd``;
    * ``bit_ends_at_63``, ``bit_alt_next2``: the extra bits of an AC coefficient ended;
      if that was coefficient 63 (``k == 64``) the block ends instead: next state
      ``bit_alt_next2 // 2``, ``k = 0``;
    * ``bit_pred_check``: index into ``pred_check_sets`` (bitsets over the current
      predictor index; 0: no check);
    * ``bit_pred_mode``, ``bit_pred_value``: the predictor update;
    * ``bit_special``: bool, any of the above beyond next state and ``bit_kmax`` apply.

    *Byte tables*, arrays [256 * n_states] indexed ``row = 256 * state + byte`` (one
    whole entropy-coded byte from a byte-aligned state), with ``k0`` the k before the
    byte kept symbolic:

    * ``byte_kmax`` (int8): the byte is valid iff ``k0 <= byte_kmax`` (-1: never; for
      states in the DC phase k0 is 0 and the value is ``NO_LIMIT`` or -1);
    * ``byte_next`` (int16): the state after it;
    * ``byte_kmul``, ``byte_kadd`` (int8): ``k = k0 * byte_kmul + byte_kadd`` (mul 0
      once the block ended);
    * ``byte_pred_set`` (int32): the predictors allowed at the *start* of the byte, the
      interned bitset ``pred_sets[byte_pred_set]`` (0: all);
    * ``byte_pred_mode``, ``byte_pred_value`` (int8, int16): the predictor update;
    * ``byte_alt_k0``, ``byte_alt_index`` (int8, int32; [rows, 3]): if the byte
      completes coefficient 63 of its block for exactly ``k0 == byte_alt_k0[row, j]``
      (-1: unused slot), the outcome is entry ``byte_alt_index[row, j]`` of the
      ``alt_*`` arrays (:meth:`alt_outcome`) instead.

    ``*_view`` attributes are memoryviews of the byte tables (fast scalar reads).
    """

    def __init__(self, blocks: tuple, dc_bound: tuple):
        self.blocks = blocks
        self.nblocks = len(blocks)
        self.dc_bound = dc_bound
        self.luma_dc_bound = dc_bound[0]   # predictor index p = DC predictor + luma_dc_bound
        self.n_preds = 2 * self.luma_dc_bound + 1
        self.all_preds = (1 << self.n_preds) - 1
        self._dc_extra_sets: dict = {}
        self._setup_blocks()
        self._build_bit_tables()
        # byte-level predictor constraints, interned (id 0: all)
        self.pred_sets: list[int] = [self.all_preds]
        self._pred_set_ids: dict = {self.all_preds: 0}
        self._pred_rows = bits_matrix(self.pred_sets, self.n_preds)
        self._pred_cols = None
        self._alloc_byte_tables()
        self.build_all()
        for name, dt in (("byte_kmax", np.int8), ("byte_next", np.int16),
                         ("byte_kmul", np.int8), ("byte_kadd", np.int8),
                         ("byte_pred_set", np.int32), ("byte_pred_mode", np.int8),
                         ("byte_pred_value", np.int16), ("byte_alt_k0", np.int8),
                         ("byte_alt_index", np.int32)):
            setattr(self, name, narrow_ints(getattr(self, name), dt))
        del self._n_alts
        # scalar views (fast element access as Python ints)
        self.byte_kmax_view = memoryview(self.byte_kmax)
        self.byte_next_view = memoryview(self.byte_next)
        self.byte_kmul_view = memoryview(self.byte_kmul)
        self.byte_kadd_view = memoryview(self.byte_kadd)
        self.byte_pred_set_view = memoryview(self.byte_pred_set)
        self.byte_pred_mode_view = memoryview(self.byte_pred_mode)
        self.byte_pred_value_view = memoryview(self.byte_pred_value)
        self.byte_alt_k0_view = memoryview(self.byte_alt_k0.reshape(-1))

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
        whose predictor is known to be 0: all_preds or 0."""
        if self._blk_mode[blk] != 2:
            return self.all_preds if ok(0) else 0
        out = 0
        for pred in range(-self.luma_dc_bound, self.luma_dc_bound + 1):
            if ok(pred):
                out |= 1 << (pred + self.luma_dc_bound)
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

    def _dcx_set(self, blk: int, cat: int, nleft: int, prefix: int) -> int:
        """Predictors for which a DC of category ``cat`` whose extra bits start with
        ``prefix`` (``nleft`` more to come) can still land in range."""
        key = (blk, cat, nleft, prefix)
        preds = self._dc_extra_sets.get(key)
        if preds is None:
            bound = self._blk_bound[blk]
            vlo, vhi = prefix << nleft, ((prefix + 1) << nleft) - 1
            half = 1 << (cat - 1)
            ivs = []  # reachable DC differences as intervals
            if vhi >= half:
                ivs.append((max(vlo, half), vhi))
            if vlo < half:
                ivs.append((vlo - (2 * half - 1), min(vhi, half - 1) - (2 * half - 1)))
            preds = self._bitset(blk, lambda pred: any(
                max(lo, -bound - pred) <= min(hi, bound - pred) for lo, hi in ivs))
            self._dc_extra_sets[key] = preds
        return preds

    def _block_end(self, blk: int) -> tuple:
        return (PH_PAD, -1, 0, 0) if blk + 1 == self.nblocks else (PH_DC, blk + 1, 0, 0)

    def _trans(self, st: tuple, bit: int):
        """One bit from k-free state ``st``: None (never valid) or
        ``(next, kmax, kmul, kadd, ends_at_63, alt_next, pred_check, pred_mode,
        pred_value)`` (one row of the bit tables, see the class doc; states as tuples,
        ``pred_check`` a bitset or None). ``node`` below is a Huffman trie child: >= 0 an
        inner node, else ``-1 - symbol``."""
        ph, blk, zrl, x = st
        luma_bound, all_preds = self.luma_dc_bound, self.all_preds
        if ph == PH_PAD:
            return (st, NO_LIMIT, 1, 0, False, None, None, 0, 0) if bit else None
        if ph == PH_DC:
            node = self._blk_dc[blk][x][bit]
            if node == INVALID:
                return None
            mode = self._blk_mode[blk]
            if node >= 0:
                live = self._blk_dclive[blk][node]
                if not live:
                    return None
                return ((PH_DC, blk, 0, node), NO_LIMIT, 1, 0, False, None,
                        None if live == all_preds else live, 0, 0)
            cat = -1 - node
            if cat == 0:  # a zero difference keeps an in-range predictor in range
                return ((PH_AC, blk, 0, 0), NO_LIMIT, 0, 1, False, None, None,
                        2 if mode == 1 else 0, luma_bound)
            live = self._dcx_set(blk, cat, cat, 0)
            if not live:
                return None
            return ((PH_DCX, blk, 0, cat | (cat << 4)), NO_LIMIT, 1, 0, False, None,
                    None if live == all_preds else live, 0, 0)
        if ph == PH_DCX:
            cat, nleft, prefix = x & 15, (x >> 4) & 15, x >> 8
            prefix = prefix * 2 + bit
            nleft -= 1
            live = self._dcx_set(blk, cat, nleft, prefix)
            if not live:
                return None
            check = None if live == all_preds else live
            if nleft:
                return ((PH_DCX, blk, 0, cat | (nleft << 4) | (prefix << 8)), NO_LIMIT, 1, 0,
                        False, None, check, 0, 0)
            diff = prefix if prefix >> (cat - 1) else prefix - ((1 << cat) - 1)
            mode = self._blk_mode[blk]
            pm, pv = (2, diff + luma_bound) if mode == 1 else (1, diff) if mode == 2 else (0, 0)
            return ((PH_AC, blk, 0, 0), NO_LIMIT, 0, 1, False, None, check, pm, pv)
        if ph == PH_AC:
            node = self._blk_ac[blk][x][bit]
            if node == INVALID:
                return None
            if node >= 0:
                eob, zr, minrun = self._blk_acinfo[blk][node]
                if eob and not zrl:
                    kmax = NO_LIMIT
                else:
                    kmax = max(K_SAFE if zr else -1, 63 - minrun if minrun <= 15 else -1)
                if kmax < 1:
                    return None
                return ((PH_AC, blk, zrl, node), kmax, 1, 0, False, None, None, 0, 0)
            sym = -1 - node
            run, size = sym >> 4, sym & 15
            if size == 0:
                if run == 0:  # EOB
                    return None if zrl else (self._block_end(blk), NO_LIMIT, 0, 0, False,
                                             None, None, 0, 0)
                if run == 15:  # ZRL: a non-zero coefficient must still fit after it
                    return ((PH_AC, blk, 1, 0), K_SAFE, 1, 16, False, None, None, 0, 0)
                return None
            return ((PH_ACX, blk, 0, size), 63 - run, 1, run + 1, False, None, None, 0, 0)
        # PH_ACX: extra bits of an AC coefficient; k already points past it
        if x > 1:
            return ((PH_ACX, blk, 0, x - 1), NO_LIMIT, 1, 0, False, None, None, 0, 0)
        return ((PH_AC, blk, 0, 0), NO_LIMIT, 1, 0, True, self._block_end(blk), None, 0, 0)

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
        self.pad_state = sid_of((PH_PAD, -1, 0, 0))
        self.first_dc_state = index[(PH_DC, 0, 0, 0)]
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
        check_index: dict = {self.all_preds: 0}
        check_sets: list = [self.all_preds]
        cols = [np.zeros(2 * n, np.int64) for _ in range(9)]
        (next2, kmax, kmul, kadd, ends_at_63, alt_next2, pred_check, pred_mode,
         pred_value) = cols
        kmax[:] = -1
        kmul[:] = 1
        for i, t in enumerate(rows):
            if t is None:
                continue
            nxt, t_kmax, t_kmul, t_kadd, t_end63, t_alt, t_check, t_mode, t_value = t
            next2[i], kmax[i], kmul[i], kadd[i] = 2 * nxt, t_kmax, t_kmul, t_kadd
            ends_at_63[i], alt_next2[i] = t_end63, 2 * t_alt
            pred_mode[i], pred_value[i] = t_mode, t_value
            if t_check is not None:
                if t_check not in check_index:
                    check_index[t_check] = len(check_sets)
                    check_sets.append(t_check)
                pred_check[i] = check_index[t_check]
        ends_at_63 = ends_at_63.astype(bool)
        self.bit_next2, self.bit_kmax, self.bit_kmul, self.bit_kadd = next2, kmax, kmul, kadd
        self.bit_ends_at_63, self.bit_alt_next2 = ends_at_63, alt_next2
        self.bit_pred_check, self.bit_pred_mode, self.bit_pred_value = (pred_check, pred_mode,
                                                                        pred_value)
        self.bit_special = ((kmul != 1) | (kadd != 0) | ends_at_63 | (pred_check != 0)
                            | (pred_mode != 0))
        # int32 copies for the vectorized byte-table build
        self.bit_kmax32, self.bit_next2_32 = kmax.astype(np.int32), next2.astype(np.int32)
        self.bit_kadd32, self.bit_pred_value32 = kadd.astype(np.int32), pred_value.astype(np.int32)
        self.pred_check_sets = check_sets
        self.phase_of = np.array([-1] + [s[0] for s in states[1:]], np.int64)
        self.is_ac_state = (self.phase_of == PH_AC) | (self.phase_of == PH_ACX)
        # plain lists for the scalar path (:meth:`scan_byte`)
        self._bit_lists = tuple(table.tolist() for table in (
            next2, kmax, kmul, kadd, ends_at_63, alt_next2, pred_check, pred_mode, pred_value,
            self.bit_special))

    # -- byte tables -----------------------------------------------------------------
    def intern_pred_set(self, bits: int) -> int:
        """The id of predictor bitset ``bits`` in ``pred_sets`` (appended if new)."""
        i = self._pred_set_ids.get(bits)
        if i is None:
            i = self._pred_set_ids[bits] = len(self.pred_sets)
            self.pred_sets.append(bits)
        return i

    @property
    def pred_set_rows(self) -> np.ndarray:
        """Bool matrix [n_constraints, n_preds] of the interned predictor bitsets."""
        if len(self._pred_rows) < len(self.pred_sets):
            new = bits_matrix(self.pred_sets[len(self._pred_rows):], self.n_preds)
            self._pred_rows = np.concatenate([self._pred_rows, new])
            self._pred_cols = None
        return self._pred_rows

    @property
    def pred_set_cols(self) -> np.ndarray:
        """``pred_set_rows`` transposed and contiguous: ``pred_set_cols[p][set_id]``."""
        rows = self.pred_set_rows
        if self._pred_cols is None:
            self._pred_cols = np.ascontiguousarray(rows.T)
        return self._pred_cols

    def _alloc_byte_tables(self) -> None:
        rows = self.n_states * 256
        self.byte_next = np.zeros(rows, np.int64)
        self.byte_kmax = np.full(rows, -1, np.int64)
        self.byte_kmul = np.zeros(rows, np.int64)
        self.byte_kadd = np.zeros(rows, np.int64)
        self.byte_pred_set = np.zeros(rows, np.int64)
        self.byte_pred_mode = np.zeros(rows, np.int64)
        self.byte_pred_value = np.zeros(rows, np.int64)
        # block ends at coefficient 63 for one k0: byte_alt_k0[row, j] = that k0 (-1: none),
        # byte_alt_index[row, j] = index into the alt_* outcome arrays
        self.byte_alt_k0 = np.full((rows, 3), -1, np.int64)
        self.byte_alt_index = np.zeros((rows, 3), np.int64)
        self._n_alts = np.zeros(rows, np.int8)
        # the outcomes (state, k, predictor-set id, predictor update) of those cases
        empty = np.zeros(0, np.int64)
        self.alt_next = self.alt_k = self.alt_pred_set = empty
        self.alt_pred_mode = self.alt_pred_value = empty

    def build_all(self, chunk: int = 1024) -> None:
        """Build every state's byte tables (done at construction: about half a second)."""
        t0 = time.perf_counter()
        sids = np.array([s for s in range(1, self.n_states) if s != self.pad_state], np.int64)
        for c0 in range(0, len(sids), chunk):
            self._byte_chunk(sids[c0:c0 + chunk])
        self.tables_seconds = time.perf_counter() - t0

    def _byte_chunk(self, sids: np.ndarray) -> None:
        """Run every byte from every state in ``sids`` through the bit tables, one numpy
        lane per (state, byte), with k symbolic: ``k = k0 * mul + add``."""
        i32 = np.int32
        row = (sids[:, None].astype(i32) * 256 + np.arange(256, dtype=i32)[None, :]).ravel()
        n = len(row)
        is_ac = self.is_ac_state[row >> 8]
        st = {"row": row, "byte": row & 255, "s2": 2 * (row >> 8),
              "kfix": np.where(is_ac, -1, 0).astype(i32),  # DC-phase states: k0 is 0
              "rel": is_ac.copy(),                           # k = k0 + add, k0 unknown
              "mul": np.ones(n, i32), "add": np.zeros(n, i32),
              "thr": np.full(n, NO_LIMIT, i32), "alive": np.ones(n, bool),
              "pred_set": np.zeros(n, np.int64), "um": np.zeros(n, i32), "uv": np.zeros(n, i32)}
        forks: list = []
        st = self.run_bits(st, 7, forks)
        r, live = st["row"], st["alive"]
        self.byte_next[r] = np.where(live, st["s2"] // 2, 0)
        self.byte_kmax[r] = np.where(live, st["thr"], -1)
        self.byte_kmul[r] = st["mul"]
        self.byte_kadd[r] = st["add"]
        self.byte_pred_set[r] = st["pred_set"]
        self.byte_pred_mode[r] = st["um"]
        self.byte_pred_value[r] = st["uv"]
        for j, f in forks:
            slot = self._n_alts[f["row"]].astype(np.int64)
            if np.count_nonzero(slot >= 3):
                raise AssertionError("more than 3 block ends at coefficient 63 in one byte")
            self._n_alts[f["row"]] += 1
            f["slot"] = slot
            if j > 0:
                f = self.run_bits(f, j - 1, None)
            f = {k: v[f["alive"]] for k, v in f.items()}
            base = len(self.alt_next)
            self.byte_alt_k0[f["row"], f["slot"]] = f["kfix"]
            self.byte_alt_index[f["row"], f["slot"]] = base + np.arange(len(f["row"]))
            self.alt_next = np.concatenate([self.alt_next, f["s2"] // 2])
            self.alt_k = np.concatenate([self.alt_k, f["add"]])
            self.alt_pred_set = np.concatenate([self.alt_pred_set, f["pred_set"]])
            self.alt_pred_mode = np.concatenate([self.alt_pred_mode, f["um"]])
            self.alt_pred_value = np.concatenate([self.alt_pred_value, f["uv"]])

    def run_bits(self, st: dict, jstart: int, forks: list | None) -> dict:
        """Bits ``jstart .. 0`` of every lane's byte (in place where possible). Relative
        lanes that finish coefficient 63 for exactly one k0 spawn a fork lane (appended
        to ``forks`` as ``(bit, lanes)``; forks are absolute and never fork again).

        ``st`` holds one equal-length array per lane field: ``byte`` (the byte being
        read), ``s2`` (2 * state), ``kfix`` (the known k0, -1 if symbolic), ``rel`` (k is
        ``k0 + add``), ``mul``/``add`` (``k = k0 * mul + add``), ``thr`` (valid iff
        ``k0 <= thr``), ``alive``, ``pred_set`` (id of the allowed byte-start predictor set),
        ``um``/``uv`` (the predictor update so far); callers may add their own fields,
        which are carried along."""
        bit_kmax, bit_next2, bit_special = self.bit_kmax32, self.bit_next2_32, self.bit_special
        for j in range(jstart, -1, -1):
            s2, add, thr, rel, alive = st["s2"], st["add"], st["thr"], st["rel"], st["alive"]
            t = s2 + ((st["byte"] >> j) & 1)
            m = bit_kmax[t] - add
            np.minimum(thr, m, out=thr, where=rel)
            alive &= np.where(rel, thr >= 1, m >= 0)
            nxt = bit_next2[t]
            sel = np.flatnonzero(bit_special[t] & alive)
            if len(sel):
                tt = t[sel]
                mul = st["mul"]
                at63 = self.bit_ends_at_63[tt]
                if np.count_nonzero(at63):
                    es = sel[at63]
                    rl = rel[es]
                    ab = es[~rl]                       # k known: the branch is decided
                    take = ab[(add[ab] + st["kfix"][ab] * mul[ab]) == 64]
                    nxt[take] = self.bit_alt_next2[t[take]]
                    mul[take] = 0
                    add[take] = 0
                    rs = es[rl]                         # k = k0 + add: fork at k0 = 64 - add
                    p = 64 - add[rs]
                    can = (p <= thr[rs]) & (p >= 1)
                    if forks is not None and np.count_nonzero(can):
                        src = rs[can]
                        f = {k: v[src] for k, v in st.items()}
                        f.update(s2=self.bit_alt_next2[t[src]].astype(np.int32),
                                 kfix=p[can].astype(np.int32), rel=np.zeros(len(src), bool),
                                 mul=np.zeros(len(src), np.int32),
                                 add=np.zeros(len(src), np.int32),
                                 thr=np.full(len(src), NO_LIMIT, np.int32))
                        forks.append((j, f))
                    thr[rs] = np.minimum(thr[rs], 63 - add[rs])
                    alive[rs] &= thr[rs] >= 1
                zero = self.bit_kmul[tt] == 0
                if np.count_nonzero(zero):
                    z = sel[zero]
                    mul[z] = 0
                    add[z] = 0
                    rel[z] = False
                add[sel] += self.bit_kadd32[tt]
                pc = self.bit_pred_check[tt]
                if np.count_nonzero(pc):
                    w = sel[pc != 0]
                    self._compose_checks(w, pc[pc != 0], st["pred_set"], st["um"], st["uv"], alive)
                pm = self.bit_pred_mode[tt]
                if np.count_nonzero(pm):
                    um, uv = st["um"], st["uv"]
                    w = np.flatnonzero(pm)
                    lanes, mode, val = sel[w], pm[w], self.bit_pred_value32[tt[w]]
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

    def alt_outcome(self, row: int, j: int) -> tuple[int, int, int, int, int]:
        """(state, k, predictor-set id, pred mode, pred value) after byte-table row
        ``row`` when it ends the block at coefficient 63 (the ``k0 ==
        byte_alt_k0[row, j]`` case)."""
        i = int(self.byte_alt_index[row, j])
        return (int(self.alt_next[i]), int(self.alt_k[i]), int(self.alt_pred_set[i]),
                int(self.alt_pred_mode[i]), int(self.alt_pred_value[i]))

    def _compose_checks(self, w, cps, pred_set, um, uv, alive) -> None:
        """Lanes ``w`` meet predictor checks ``cps`` (ids into ``pred_check_sets``, over
        the *current* predictor): intersect their byte-start constraint ``pred_set`` (in
        place; lanes left with no predictor die)."""
        keys = np.stack([pred_set[w], um[w], uv[w], cps], 1)
        key = ((keys[:, 0] * 4 + keys[:, 1]) * 4096 + keys[:, 2] + 2048) * 65536 + keys[:, 3]
        _, first, inv = np.unique(key, return_index=True, return_inverse=True)
        uniq = keys[first]
        new = np.empty(len(uniq), np.int64)
        for i, (set_id, mode, value, check) in enumerate(uniq.tolist()):
            bits = self.pred_sets[set_id] & pred_preimage(
                mode, value, self.pred_check_sets[check], self.all_preds)
            new[i] = self.intern_pred_set(bits) if bits else -1
        res = new[inv.ravel()]
        alive[w] &= res >= 0
        pred_set[w] = np.maximum(res, 0)

    # -- scalar path ---------------------------------------------------------------
    def scan_byte(self, sid: int, k: int, pred: int, byte: int):
        """One entropy-coded byte from byte-aligned scan state ``sid`` with concrete
        ``k`` and predictor index ``pred``: ``(sid', k', pred')`` or None."""
        state = (2 * sid, k, pred)
        for j in range(7, -1, -1):
            state = self.scan_bit(*state, (byte >> j) & 1)
            if state is None:
                return None
        return state[0] // 2, state[1], state[2]

    def scan_bit(self, s2: int, k: int, pred: int, bit: int):
        """One bit from scan state ``s2 // 2`` (``s2``: twice the state id, as the bit
        tables index it) with concrete ``k`` and predictor index ``pred``: ``(s2', k',
        pred')`` or None."""
        (next2, kmax, kmul, kadd, ends_at_63, alt_next2, pred_check, pred_mode, pred_value,
         special) = self._bit_lists
        t = s2 + bit
        if k > kmax[t]:
            return None
        s2 = next2[t]
        if special[t]:
            if ends_at_63[t] and k == 64:
                s2, k = alt_next2[t], 0
            else:
                k = k * kmul[t] + kadd[t]
            check = pred_check[t]
            if check and not (self.pred_check_sets[check] >> pred) & 1:
                return None
            if pred_mode[t] == 1:
                pred += pred_value[t]
            elif pred_mode[t] == 2:
                pred = pred_value[t]
        return (s2, k, pred) if s2 else None


def pred_preimage(mode: int, value: int, allowed: int, full: int) -> int:
    """Bitset of the starting predictor indices whose image under the update
    ``(mode, value)`` is in bitset ``allowed`` (mode 0 identity, 1 shift by ``value``,
    2 set to ``value``); ``full`` is the bitset of every index."""
    if mode == 0:
        return allowed
    if mode == 2:
        return full if (allowed >> value) & 1 else 0
    return ((allowed >> value) if value >= 0 else (allowed << -value)) & full


_AUTOMATA: dict = {}


def scan_automaton(layout: ScanLayout) -> ScanAutomaton:
    """The shared :class:`ScanAutomaton` for a layout's blocks and DC bounds (memoized)."""
    key = (layout.blocks, layout.dc_bound)
    automaton = _AUTOMATA.get(key)
    if automaton is None:
        automaton = _AUTOMATA[key] = ScanAutomaton(*key)
    return automaton
