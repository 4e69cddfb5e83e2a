"""Token tables: the automaton's byte tables extended along the vocabulary trie.

For every (byte-aligned scan state, token) pair, the outcome of the token's bytes from
that state, with the coefficient index ``k`` symbolic exactly as in the byte tables.
About a second to build per vocabulary; shared by every layout with the same blocks and
DC bounds (the header and image size do not matter).
"""

from __future__ import annotations

import time

import numpy as np

from .automaton import NO_LIMIT, ScanAutomaton
from .bitsets import narrow_ints
from .vocab_trie import VocabTrie


class TokenTables:
    """Per (scan state, token) outcomes, arrays [n_states * vocab_size] indexed
    ``row = sid * vocab_size + token``, with ``k0`` the k before the token:

    * ``tok_kmax`` (int8): the token is valid iff ``k0 <= tok_kmax`` (-1: never);
    * ``tok_next`` (int16): the state after it;
    * ``tok_kmul``, ``tok_kadd`` (int8): ``k = k0 * tok_kmul + tok_kadd``;
    * ``tok_stuff_due`` (int8): 1 if a stuffed zero byte is due after it;
    * ``tok_pred_set`` (int32): the predictors allowed at the token's start, the
      automaton's interned bitset ``pred_sets[tok_pred_set]`` (0: all);
      ``tok_pred_dependent`` / ``tok_pred_free`` (bool): that id is / is not 0;
    * ``tok_pred_mode``, ``tok_pred_value`` (int8, int16): the predictor update;
    * ``tok_hits_marker`` (bool): the token runs into a marker (end of MCU data); such
      tokens are walked byte by byte when an entry is built instead.

    Where a token ends its block at coefficient 63 for exactly one ``k0``, that
    alternative outcome is a row of the ``talt_*`` arrays (sorted by state: those of
    state ``s`` are ``talt_start[s]:talt_start[s + 1]``): token ``talt_token``, at
    ``k0 == talt_k0``, next state ``talt_next``, ``k = talt_k``, predictor set
    ``talt_pred_set``, update ``talt_pred_mode``/``talt_pred_value``.

    ``tok_views`` / ``talt_views``: memoryviews for fast scalar reads, in the orders
    ``(kmax, next, kmul, kadd, pred_set, pred_mode, pred_value, stuff_due)`` and
    ``(next, k, pred_set, pred_mode, pred_value)``.
    """

    def __init__(self, automaton: ScanAutomaton, trie: VocabTrie, vocab_size: int):
        t0 = time.perf_counter()
        self.automaton, self.trie, self.vocab_size = automaton, trie, vocab_size
        auto = automaton
        n = auto.n_states
        rows = n * vocab_size
        self.tok_kmax = np.full(rows, -1, np.int64)
        self.tok_next = np.zeros(rows, np.int64)
        self.tok_kmul = np.zeros(rows, np.int64)
        self.tok_kadd = np.zeros(rows, np.int64)
        self.tok_pred_set = np.zeros(rows, np.int64)
        self.tok_pred_mode = np.zeros(rows, np.int64)
        self.tok_pred_value = np.zeros(rows, np.int64)
        self.tok_stuff_due = np.zeros(rows, np.int64)
        self.tok_hits_marker = np.zeros(rows, bool)
        alt_parts: list = []   # (row, k0, state, k, pred-set id, pred mode, pred value) arrays
        sids = np.array([s for s in range(1, n) if s != auto.pad_state], np.int64)
        levels = trie.levels
        self._depth1(sids, alt_parts)
        if len(levels) > 1:
            st = self._depth1_lanes(sids)
            for d in range(1, len(levels)):
                st = self._expand(st, d)
                if not len(st["node"]):
                    break
                st = self._token_byte(st)
                self._record(st, d, alt_parts)
        self._sort_alternatives(alt_parts, n)
        for name, dt in (("tok_kmax", np.int8), ("tok_next", np.int16), ("tok_kmul", np.int8),
                         ("tok_kadd", np.int8), ("tok_pred_set", np.int32),
                         ("tok_pred_mode", np.int8), ("tok_pred_value", np.int16),
                         ("tok_stuff_due", np.int8), ("talt_k0", np.int8),
                         ("talt_next", np.int16), ("talt_k", np.int8),
                         ("talt_pred_set", np.int32), ("talt_pred_mode", np.int8),
                         ("talt_pred_value", np.int16), ("talt_token", np.int32)):
            setattr(self, name, narrow_ints(getattr(self, name), dt))
        self.tok_pred_dependent = self.tok_pred_set != 0      # valid only for some predictors
        self.tok_pred_free = ~self.tok_pred_dependent
        self.talt_views = tuple(memoryview(x) for x in (
            self.talt_next, self.talt_k, self.talt_pred_set, self.talt_pred_mode,
            self.talt_pred_value))
        self.tok_views = tuple(memoryview(x) for x in (
            self.tok_kmax, self.tok_next, self.tok_kmul, self.tok_kadd, self.tok_pred_set,
            self.tok_pred_mode, self.tok_pred_value, self.tok_stuff_due))
        self.build_seconds = time.perf_counter() - t0

    def _depth1(self, sids: np.ndarray, alt_parts: list) -> None:
        """Single-byte tokens: copied from the automaton's byte tables."""
        auto, vocab_size = self.automaton, self.vocab_size
        lv = self.trie.levels[0]
        if not len(lv.tok_ids):
            return
        tok, byt = lv.tok_ids, lv.byte[lv.tok_lane]
        dst = (sids[:, None] * vocab_size + tok[None, :]).ravel()
        src = (sids[:, None] * 256 + byt[None, :]).ravel()
        for tok_table, byte_table in ((self.tok_kmax, auto.byte_kmax),
                                      (self.tok_next, auto.byte_next),
                                      (self.tok_kmul, auto.byte_kmul),
                                      (self.tok_kadd, auto.byte_kadd),
                                      (self.tok_pred_set, auto.byte_pred_set),
                                      (self.tok_pred_mode, auto.byte_pred_mode),
                                      (self.tok_pred_value, auto.byte_pred_value)):
            tok_table[dst] = byte_table[src]
        self.tok_stuff_due[dst] = np.tile(byt == 0xFF, len(sids))
        for j in range(3):
            has = auto.byte_alt_k0[src, j] >= 0
            ai = auto.byte_alt_index[src[has], j]
            alt_parts.append((dst[has], auto.byte_alt_k0[src[has], j], auto.alt_next[ai],
                              auto.alt_k[ai], auto.alt_pred_set[ai], auto.alt_pred_mode[ai],
                              auto.alt_pred_value[ai]))

    def _sort_alternatives(self, alt_parts: list, n_states: int) -> None:
        """The ``talt_*`` arrays from the collected parts, sorted by row."""
        cols = [np.concatenate([p[i] for p in alt_parts]) if alt_parts else
                np.zeros(0, np.int64) for i in range(7)]
        order = np.argsort(cols[0], kind="stable")
        (talt_row, self.talt_k0, self.talt_next, self.talt_k, self.talt_pred_set,
         self.talt_pred_mode, self.talt_pred_value) = (c[order].astype(np.int64) for c in cols)
        self.talt_token = talt_row % self.vocab_size
        self.talt_start = np.searchsorted(talt_row, np.arange(n_states + 1) * self.vocab_size)

    def _depth1_lanes(self, sids: np.ndarray) -> dict:
        """Lanes (one per state and first byte that starts a longer token, plus one per
        coefficient-63 alternative) after the first byte, from the byte tables. Lane
        fields are those of :meth:`ScanAutomaton.run_bits` plus ``sid0`` (the starting
        state), ``node`` (trie lane), ``ff``, ``alt`` (an alternative outcome) and
        ``spec`` (ran into a marker)."""
        auto = self.automaton
        firsts = np.array([lane for lane, kids in enumerate(self.trie.children[0]) if kids],
                          np.int64)
        sid0 = np.repeat(sids, len(firsts))
        node = np.tile(firsts, len(sids))
        src = sid0 * 256 + node  # depth-1 lane b is byte b
        live = auto.byte_kmax[src] >= 0
        is_ac = auto.is_ac_state[sid0]
        i64 = np.int64
        sl = src[live]
        st = {"sid0": sid0[live], "node": node[live],
              "s2": 2 * auto.byte_next[sl].astype(i64),
              "kfix": np.where(is_ac[live], -1, 0),
              "rel": is_ac[live] & (auto.byte_kmul[sl] == 1),
              "mul": auto.byte_kmul[sl].astype(i64), "add": auto.byte_kadd[sl].astype(i64),
              "thr": auto.byte_kmax[sl].astype(i64), "alive": np.ones(len(sl), bool),
              "pred_set": auto.byte_pred_set[sl].astype(i64),
              "um": auto.byte_pred_mode[sl].astype(i64),
              "uv": auto.byte_pred_value[sl].astype(i64),
              "ff": (node[live] == 0xFF).astype(i64),
              "alt": np.zeros(len(sl), bool), "spec": np.zeros(len(sl), bool)}
        parts = [st]
        for j in range(3):
            ak = auto.byte_alt_k0[src, j]
            has = ak >= 0
            if not np.count_nonzero(has):
                continue
            ai = auto.byte_alt_index[src[has], j]
            m = int(np.count_nonzero(has))
            parts.append({"sid0": sid0[has], "node": node[has], "s2": 2 * auto.alt_next[ai],
                          "kfix": ak[has].astype(np.int64), "rel": np.zeros(m, bool),
                          "mul": np.zeros(m, np.int64),
                          "add": auto.alt_k[ai], "thr": np.full(m, NO_LIMIT, np.int64),
                          "alive": np.ones(m, bool), "pred_set": auto.alt_pred_set[ai],
                          "um": auto.alt_pred_mode[ai], "uv": auto.alt_pred_value[ai],
                          "ff": (node[has] == 0xFF).astype(np.int64),
                          "alt": np.ones(m, bool), "spec": np.zeros(m, bool)})
        return {k: np.concatenate([p[k] for p in parts]) for k in st}

    def _expand(self, st: dict, d: int) -> dict:
        """Lanes at depth ``d`` -> one lane per child prefix at depth ``d + 1``."""
        kids = self.trie.children[d - 1]
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
        out["byte"] = self.trie.levels[d].byte[out["node"]]
        return out

    def _token_byte(self, st: dict) -> dict:
        """One more byte for every lane: stuffing, end of MCU (-> byte-by-byte at entry
        time), else 8 bits through the automaton's bit tables."""
        auto = self.automaton
        b = st["byte"]
        ffl = st["alive"] & (st["ff"] == 1)
        st["alive"] &= ~(ffl & (b != 0))
        st["ff"][ffl] = 0
        pad = st["alive"] & ~ffl & (st["s2"] == 2 * auto.pad_state)
        st["spec"] |= pad & (b == 0xFF)   # a marker inside the token
        st["alive"] &= ~pad
        norm = st["alive"] & ~ffl
        if not np.count_nonzero(norm):
            return st
        idx = np.flatnonzero(norm)
        sub = {k: v[idx] for k, v in st.items()}
        forks: list = []
        sub = auto.run_bits(sub, 7, forks)
        sub["ff"] = (sub["byte"] == 0xFF).astype(np.int64)
        parts = [{k: v[~norm] for k, v in st.items()}, sub]
        for j, f in forks:
            f["alt"] = np.ones(len(f["node"]), bool)
            if j > 0:
                f = auto.run_bits(f, j - 1, None)
            f["ff"] = (f["byte"] == 0xFF).astype(np.int64)
            parts.append(f)
        return {k: np.concatenate([p[k] for p in parts]) for k in st}

    def _record(self, st: dict, d: int, alt_parts: list) -> None:
        """Write the outcomes of the tokens that end at depth ``d + 1`` (alternative
        outcomes are appended to ``alt_parts``)."""
        lv = self.trie.levels[d]
        if not len(lv.tok_ids):
            return
        vocab_size = self.vocab_size
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
                rows = h["sid0"] * vocab_size + t
                spec = h["spec"]
                self.tok_hits_marker[rows[spec]] = True
                dflt = ~h["alt"] & h["alive"] & ~spec
                r = rows[dflt]
                self.tok_kmax[r] = np.where(h["kfix"][dflt] < 0, h["thr"][dflt], NO_LIMIT)
                self.tok_next[r] = h["s2"][dflt] // 2
                self.tok_kmul[r] = h["mul"][dflt]
                self.tok_kadd[r] = h["add"][dflt]
                self.tok_pred_set[r] = h["pred_set"][dflt]
                self.tok_pred_mode[r] = h["um"][dflt]
                self.tok_pred_value[r] = h["uv"][dflt]
                self.tok_stuff_due[r] = h["ff"][dflt]
                al = h["alt"] & h["alive"] & ~spec
                if np.count_nonzero(al):
                    alt_parts.append((rows[al], h["kfix"][al], h["s2"][al] // 2, h["add"][al],
                                      h["pred_set"][al], h["um"][al], h["uv"][al]))


_TOKEN_TABLES: dict = {}


def token_tables(automaton: ScanAutomaton, trie: VocabTrie, vocab: tuple,
                 eos_id: int) -> TokenTables:
    """The shared :class:`TokenTables` of an automaton and a vocabulary (memoized; the
    same for every header and image size with the automaton's blocks and DC bounds)."""
    key = (automaton.blocks, automaton.dc_bound, vocab, eos_id)
    tables = _TOKEN_TABLES.get(key)
    if tables is None:
        tables = _TOKEN_TABLES[key] = TokenTables(automaton, trie, len(vocab))
    return tables
