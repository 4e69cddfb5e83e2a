"""A layout's scan automaton joined with one vocabulary: mask entries and their caches.

:class:`CompiledScanGrammar` answers, for a token-boundary *core* ``(sid, k, ff)``,
which tokens may come next and where each leads (a :class:`MaskEntry`). Scan cores
read the token tables; cores at the header, a marker, a pending stuffed zero or the
end of MCU data walk the vocabulary trie lane by lane.

A token's *move* is the tuple ``(sid, k or k offset, k is relative, ff, pred mode,
pred value, markers, allowed starting predictors (bitset), allowed MCU classes
(bitset))``; a relative ``k`` is added to the core's.

The *MCU class* of MCU ``i`` (MCUs completed so far) is ``(i % 8) + 8 * min(n_mcus - 1 -
i, mcu_lookahead)``: which RST comes next and how far the last MCU (EOI) is, which is
all a token that crosses markers depends on.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence

import numpy as np
import torch

from codeclm.errors import TokenizerError
from codeclm.token_bytes import TokenPrefixes

from .automaton import S_END, S_FIN, S_HDR, S_MARK, pred_preimage, scan_automaton
from .bitsets import bits_matrix, row_bits
from .entries import MaskEntry, TrieLanes
from .header import ScanLayout
from .token_tables import token_tables
from .vocab_trie import TrieLevel, VocabTrie

#: trie depths with at most this many live prefixes are finished lane by lane in Python
SCALAR_LANES = 16


class CompiledScanGrammar:
    """A layout's :class:`ScanAutomaton` joined with one vocabulary, plus the caches.

    Shared by all :class:`JpegScanGrammar` instances built for the same layout,
    vocabulary and EOS id (see :func:`compile_grammar`). ``cache_info()`` reports mask
    calls, entries built (cache misses), distinct cores seen and build time.

    ``vocab[i]``: bytes of token ``i`` (None: a special token); ``entries``: core ->
    :class:`MaskEntry` (at most ``max_entries``, then cleared). Predictors and their
    bitsets are the automaton's (``luma_dc_bound``, ``n_preds``, ``all_preds``); MCU
    classes (module docstring) number ``n_mcu_classes``, ``all_classes`` is the bitset
    of all of them.
    """

    def __init__(self, layout: ScanLayout, vocab: Sequence[bytes | None], eos_id: int,
                 max_entries: int = 200_000):
        self.layout = layout
        self.vocab = [None if v is None else bytes(v) for v in vocab]
        self.vocab_size = len(self.vocab)
        if not 0 <= eos_id < self.vocab_size:
            raise TokenizerError(f"eos_id {eos_id} is outside the vocabulary of "
                                 f"{self.vocab_size}")
        self.eos_id = eos_id
        singles = {v for i, v in enumerate(self.vocab) if v is not None and len(v) == 1
                   and i != eos_id}
        if len(singles) < 256:
            raise TokenizerError(f"the vocabulary lacks {256 - len(singles)} of the 256 single "
                                 "bytes; the grammar needs all of them to never dead-end")
        #: byte -> the id of its single-byte token
        self.byte_ids = {v[0]: i for i, v in enumerate(self.vocab)
                         if v is not None and len(v) == 1 and i != eos_id}
        #: token id -> the tokens whose bytes are a proper prefix of its own, longest first
        self.prefixes = TokenPrefixes(self.vocab)
        auto = self.automaton = scan_automaton(layout)
        self.header = layout.header
        self.n_mcus = layout.n_mcus
        self.luma_dc_bound, self.n_preds, self.all_preds = (auto.luma_dc_bound, auto.n_preds,
                                                            auto.all_preds)
        self.pad_state, self.first_dc_state = auto.pad_state, auto.first_dc_state
        self.max_entries = max_entries
        # a token spans at most this many MCUs ahead: MCU classes only need to tell that many
        self.mcu_lookahead = max(len(v) for v in self.vocab if v) + 1
        self.n_mcu_classes = 8 * (self.mcu_lookahead + 1)
        self.all_classes = (1 << self.n_mcu_classes) - 1
        self._class_preimages: dict = {}
        self.trie = VocabTrie(self.vocab, eos_id)
        t0 = time.perf_counter()
        self.tables = token_tables(auto, self.trie, tuple(self.vocab), eos_id)
        self.token_tables_seconds = time.perf_counter() - t0
        # hot-path references (see :meth:`transition`)
        self._tok_views, self._talt_views = self.tables.tok_views, self.tables.talt_views
        self._pred_sets = auto.pred_sets  # the automaton's interned bitsets (grows in place)
        self._header_array = np.frombuffer(self.header, np.uint8).astype(np.int64)
        self.start_core = (S_HDR, 0, 0) if self.header else (self.first_dc_state, 0, 0)
        self.entries: dict = {}
        self._ranges: dict = {}   # (sid, ff) -> (sorted klo list, entries): k-interval reuse
        self._breaks: dict = {}   # sid -> k values where some token's outcome changes
        self._spec: dict = {}     # sid -> tokens that run into a marker from it

        self.stats = {"mask_calls": 0, "entries_built": 0, "range_hits": 0,
                      "rows_built": 0, "build_seconds": 0.0}

    def _class_preimage(self, markers: int, classes: int) -> int:
        """Bitset of the MCU classes (at a token's start) for which, after ``markers``
        markers inside the token, the value ``(i % 8) + 8 * is_last`` of the marker
        being written is in bitset ``classes``."""
        key = (markers, classes)
        pre = self._class_preimages.get(key)
        if pre is None:
            pre = 0
            for ahead in range(markers, self.mcu_lookahead + 1):
                last = ahead == markers and ahead < self.mcu_lookahead
                for rst in range(8):
                    if (classes >> (((rst + markers) % 8) + 8 * last)) & 1:
                        pre |= 1 << (rst + 8 * ahead)
            self._class_preimages[key] = pre
        return pre

    def mcu_class(self, i: int) -> int:
        """Class of the MCU being written, ``i`` = MCUs completed so far."""
        return (i % 8) + 8 * min(max(self.n_mcus - 1 - i, 0), self.mcu_lookahead)

    def step_byte(self, core: tuple, pred: int, i: int, byte: int):
        """One byte with a concrete context: ``(core', pred', i')`` or None if invalid.
        ``core = (sid, k, ff)``, ``pred`` predictor index, ``i`` MCUs completed."""
        sid, k, ff = core
        if sid > 0:
            if ff:
                return ((sid, k, 0), pred, i) if byte == 0 else None
            if sid == self.pad_state:
                return ((S_MARK, 0, 0), pred, i) if byte == 0xFF else None
            after = self.automaton.scan_byte(sid, k, pred, byte)
            if after is None:
                return None
            return ((after[0], after[1], int(byte == 0xFF)), after[2], i)
        if sid == S_MARK:
            last = i == self.n_mcus - 1
            if last and byte == 0xD9:
                return ((S_END, 0, 0), pred, i + 1)
            if not last and byte == 0xD0 + i % 8:
                return ((self.first_dc_state, 0, 0), self.luma_dc_bound, i + 1)
            return None
        if sid <= S_HDR:
            pos = S_HDR - sid
            if byte != self.header[pos]:
                return None
            nsid = self.first_dc_state if pos + 1 == len(self.header) else sid - 1
            return ((nsid, 0, 0), pred, i)
        return None  # after EOI: only EOS

    # ------------------------------------------------------------ entries
    def entry(self, core: tuple) -> MaskEntry:
        """The cached entry of ``core`` (built on first use)."""
        entry = self.entries.get(core)
        if entry is not None:
            return entry
        sid, k, ff = core
        rkey = (sid, ff)
        rng = self._ranges.get(rkey)
        if rng is not None:  # entries valid on k intervals (disjoint), sorted by start
            i = bisect.bisect_right(rng[0], k) - 1
            if i >= 0 and k <= rng[1][i].khi:
                entry = rng[1][i]
                self.stats["range_hits"] += 1
                self.entries[core] = entry
                return entry
        if len(self.entries) >= self.max_entries:
            self.entries.clear()
            self._ranges.clear()
        t0 = time.perf_counter()
        entry = self._build_entry(core)
        self.stats["build_seconds"] += time.perf_counter() - t0
        self.stats["entries_built"] += 1
        self.entries[core] = entry
        if entry.khi > entry.klo:
            starts, ents = self._ranges.setdefault(rkey, ([], []))
            i = bisect.bisect_left(starts, entry.klo)
            starts.insert(i, entry.klo)
            ents.insert(i, entry)
        return entry

    def _build_entry(self, core: tuple) -> MaskEntry:
        """The entry of ``core``; for AC cores also the k interval it is valid for."""
        sid0, k0, ff0 = core
        if sid0 in (S_END, S_FIN):
            base = torch.zeros(self.vocab_size, dtype=torch.bool)
            base[self.eos_id] = True
            return MaskEntry(k0, k0, k0, base, [], eos_only=True)
        track = sid0 > 0 and bool(self.automaton.is_ac_state[sid0])
        iv = [1, 64] if track else [k0, k0]   # the k interval the entry will serve
        if sid0 > 0 and not ff0 and sid0 != self.pad_state:  # the common case: token tables
            entry = self._token_entry(sid0, k0, iv, track)
            if not iv[0] <= k0 <= iv[1]:
                raise AssertionError(f"entry range {iv} does not contain k={k0}")
            entry.klo, entry.khi = iv
            return entry
        # header, marker, stuffing, end of MCU: walk the vocabulary's byte trie
        entry = self._trie_entry(sid0, k0, ff0, track, iv)
        if not iv[0] <= k0 <= iv[1]:
            raise AssertionError(f"entry range {iv} does not contain k={k0}")
        return self._assemble(entry)

    def _trie_entry(self, sid0: int, k0: int, ff0: int, track: bool, iv: list) -> MaskEntry:
        """The (unassembled) entry of core ``(sid0, k0, ff0)`` from a walk of the trie:
        vectorized depth by depth while many prefixes live, then the few left lane by
        lane (their tokens become ``extra``). Narrows ``iv``."""
        levels = self.trie.levels
        walk = TrieLanes.start(len(levels[0].byte), sid0, k0, ff0, track)
        self._run_level(levels[0], walk, k0, iv)
        done = [walk]
        extra: dict = {}
        for d in range(1, len(levels)):
            lv = levels[d]
            live = walk.ok[lv.parent]
            n_live = np.count_nonzero(live)
            if not n_live:
                break
            if n_live > SCALAR_LANES:  # one vectorized step
                walk = walk.gather(lv.parent)
                self._run_level(lv, walk, k0, iv)
                done.append(walk)
                continue
            # few live prefixes: finish their whole subtrees lane by lane
            for lane in np.flatnonzero(live).tolist():
                p = int(lv.parent[lane])
                pred_bits = (self.all_preds if walk.pred_ok is None
                             else row_bits(walk.pred_ok[p]))
                st = [int(walk.sid[p]), int(walk.k[p]), bool(walk.rel[p]), int(walk.ff[p]),
                      int(walk.um[p]), int(walk.uv[p]), pred_bits, int(walk.markers[p]),
                      walk.class_sets.get(p, self.all_classes)]
                self._subtree(d, lane, st, k0, iv, extra)
            break
        base = torch.zeros(self.vocab_size, dtype=torch.bool)
        return MaskEntry(k0, iv[0], iv[1], base, done, extra={
            t: self._lane_move(st, k0) for t, st in extra.items()})

    @staticmethod
    def _lane_move(st: list, k0: int) -> tuple:
        """The move (module docstring) of a scalar lane state ``st`` (see :meth:`_subtree`)."""
        return (st[0], st[1] - (k0 if st[2] else 0), st[2], st[3], st[4], st[5], st[7],
                st[6], st[8])

    def _token_entry(self, sid0: int, k0: int, iv: list, track: bool) -> MaskEntry:
        """The entry of scan core ``(sid0, k0, 0)`` read from the token tables; tokens that
        run into a marker are walked byte by byte. Narrows ``iv`` to the k interval on
        which every token's outcome is the same."""
        tables, vocab_size = self.tables, self.vocab_size
        rows = slice(sid0 * vocab_size, sid0 * vocab_size + vocab_size)
        valid = tables.tok_kmax[rows] >= k0
        pred_set = tables.tok_pred_set[rows]
        alo, ahi = int(tables.talt_start[sid0]), int(tables.talt_start[sid0 + 1])
        alt_k0 = tables.talt_k0[alo:ahi]
        if track:
            self._narrow_to_breaks(sid0, k0, rows, alt_k0, iv)
        entry = MaskEntry(k0, k0, k0, None, [], by_token=True, sid0=sid0, track=track)
        hit = np.flatnonzero(alt_k0 == k0)
        if len(hit):  # these tokens end the block at coefficient 63
            valid, pred_set = valid.copy(), pred_set.copy()
            ai = alo + hit
            toks = tables.talt_token[ai]
            valid[toks] = True
            pred_set[toks] = tables.talt_pred_set[ai]
            entry.alt = dict(zip(toks.tolist(), ai.tolist()))  # token -> talt_* index
        self._walk_marker_tokens(entry, rows, iv)
        if len(hit):
            has_set = pred_set != 0
            base = valid & ~has_set
            dep = np.flatnonzero(valid & has_set)
        else:
            base = valid & tables.tok_pred_free[rows]
            dep = np.flatnonzero(valid & tables.tok_pred_dependent[rows])
        if entry.extra:
            free, xt, xk, xc = self._split_extra(entry)
            base[free] = True
            if xt:
                self._set_deps(entry, np.concatenate([dep, xt]),
                               np.concatenate([pred_set[dep], xk]),
                               [self.all_classes] * len(dep) + xc)
                dep = None
        if dep is not None and len(dep):
            entry.dep_ids, entry.dep_pred_set = dep, pred_set[dep]
        entry.base = torch.from_numpy(base)
        return entry

    def _narrow_to_breaks(self, sid0: int, k0: int, rows: slice, alt_k0: np.ndarray,
                          iv: list) -> None:
        """Narrow ``iv`` to the k interval around ``k0`` on which no token of state
        ``sid0`` changes validity (its ``tok_kmax``) or hits its coefficient-63
        alternative (``alt_k0``)."""
        breaks = self._breaks.get(sid0)
        if breaks is None:
            kmax = self.tables.tok_kmax[rows]
            alts = np.unique(alt_k0).tolist()
            breaks = self._breaks[sid0] = (np.unique(kmax[kmax >= 1]).tolist(), set(alts),
                                           alts)
        thresholds, alt_set, alts = breaks
        i = bisect.bisect_left(thresholds, k0)        # thresholds[i]: smallest one >= k0
        if i < len(thresholds):
            iv[1] = min(iv[1], thresholds[i])
        if i:
            iv[0] = max(iv[0], thresholds[i - 1] + 1)
        if k0 in alt_set:
            iv[0] = iv[1] = k0
        elif alts:
            j = bisect.bisect_left(alts, k0)
            if j < len(alts):
                iv[1] = min(iv[1], alts[j] - 1)
            if j:
                iv[0] = max(iv[0], alts[j - 1] + 1)

    def _walk_marker_tokens(self, entry: MaskEntry, rows: slice, iv: list) -> None:
        """Tokens of ``entry``'s state that run into a marker, walked byte by byte into
        ``entry.extra`` (token -> move)."""
        sid0, k0 = entry.sid0, entry.k0
        spec = self._spec.get(sid0)
        if spec is None:
            spec = self._spec[sid0] = np.flatnonzero(self.tables.tok_hits_marker[rows]).tolist()
        if not spec:
            return
        entry.extra = {}
        for t in spec:
            st = [sid0, k0, entry.track, 0, 0, 0, self.all_preds, 0, self.all_classes]
            if all(self._lane_byte(st, b, k0, iv) for b in self.vocab[t]):
                entry.extra[t] = self._lane_move(st, k0)

    def _split_extra(self, entry: MaskEntry) -> tuple[list[int], list[int], list[int],
                                                      list[int]]:
        """``entry.extra`` (tokens walked one by one) as (tokens valid whatever the DC
        predictor and MCU class, then the others: ids, predictor-set ids, class bitsets)."""
        free, ids, pred_set_ids, class_sets = [], [], [], []
        for t, move in (entry.extra or {}).items():
            if move[7] == self.all_preds and move[8] == self.all_classes:
                free.append(t)
            else:
                ids.append(t)
                pred_set_ids.append(self.automaton.intern_pred_set(move[7]))
                class_sets.append(move[8])
        return free, ids, pred_set_ids, class_sets

    def _set_deps(self, entry: MaskEntry, ids, pred_set_ids, class_sets: list[int]) -> None:
        """Record ``ids`` as ``entry``'s predictor/MCU-class dependent tokens."""
        entry.dep_ids = np.asarray(ids, np.int64)
        entry.dep_pred_set = np.asarray(pred_set_ids, np.int64)
        if any(c != self.all_classes for c in class_sets):
            entry.dep_classes = bits_matrix(class_sets, self.n_mcu_classes)

    def _assemble(self, entry: MaskEntry) -> MaskEntry:
        """Fill ``entry.base`` and the predictor/MCU-dependent tokens from its trie lanes."""
        base_np = entry.base.numpy()
        ids, pred_set_ids, class_sets = [], [], []
        for d, walk in enumerate(entry.lanes):
            lv = self.trie.levels[d]
            tok_lanes, tok_ids = lv.tok_lane, lv.tok_ids
            if not len(tok_ids):
                continue
            valid = walk.ok[tok_lanes]
            if walk.pred_ok is None and not walk.class_sets:
                base_np[tok_ids] = valid
                continue
            free = valid.copy()
            if walk.pred_ok is not None:
                free &= walk.pred_ok[tok_lanes].all(1)
            if walk.class_sets:
                free &= np.array([lane not in walk.class_sets for lane in tok_lanes.tolist()])
            base_np[tok_ids] = free
            dep = valid & ~free
            for t, lane in zip(tok_ids[dep].tolist(), tok_lanes[dep].tolist()):
                ids.append(t)
                pred_set_ids.append(0 if walk.pred_ok is None else
                                    self.automaton.intern_pred_set(row_bits(walk.pred_ok[lane])))
                class_sets.append(walk.class_sets.get(lane, self.all_classes))
        free, xt, xk, xc = self._split_extra(entry)
        base_np[free] = True
        ids, pred_set_ids, class_sets = ids + xt, pred_set_ids + xk, class_sets + xc
        if ids:
            self._set_deps(entry, ids, pred_set_ids, class_sets)
        return entry

    def _subtree(self, d: int, lane: int, st: list, k0: int, iv: list, out: dict) -> None:
        """Scalar walk of trie lane ``lane`` at depth ``d + 1`` and everything below it;
        ``st`` is the state before its last byte: ``[sid, k, rel, ff, pred mode, pred
        value, predictor bitset, markers, MCU class bitset]``."""
        if not self._lane_byte(st, self.trie.last_byte[d][lane], k0, iv):
            return
        for t in self.trie.tokens_at[d][lane]:
            out[t] = tuple(st)
        for c in self.trie.children[d][lane]:
            self._subtree(d + 1, c, list(st), k0, iv, out)

    def _lane_byte(self, st: list, byte: int, k0: int, iv: list) -> bool:
        """The scalar twin of :meth:`_run_level` for one lane state ``st`` (see
        :meth:`_subtree`; updated in place); False if the byte is invalid for every
        predictor / MCU class."""
        sid, _, _, ff, um, uv, pred_bits, markers, class_bits = st
        if sid > 0:
            if ff:
                st[3] = 0
                return byte == 0
            if sid == self.pad_state:
                st[0], st[2] = S_MARK, False
                return byte == 0xFF
            return self._lane_scan_byte(st, byte, k0, iv)
        if sid == S_MARK:
            if byte == 0xD9:
                classes, nxt = 0xFF00, S_END
            elif 0xD0 <= byte <= 0xD7:
                classes, nxt = 1 << (byte - 0xD0), self.first_dc_state
            else:
                return False
            class_bits &= self._class_preimage(markers, classes)
            if not class_bits:
                return False
            restart = nxt == self.first_dc_state  # the predictor resets to 0
            st[:] = [nxt, 0, False, 0, 2 if restart else um,
                     self.luma_dc_bound if restart else uv, pred_bits, markers + 1, class_bits]
            return True
        if sid <= S_HDR:
            pos = S_HDR - sid
            if byte != self.header[pos]:
                return False
            st[0] = self.first_dc_state if pos + 1 == len(self.header) else sid - 1
            return True
        return False

    def _lane_scan_byte(self, st: list, byte: int, k0: int, iv: list | None) -> bool:
        """An entropy-coded byte from scan state ``st[0]`` via the byte tables (in place;
        narrows ``iv`` where ``k`` is relative)."""
        sid, k, rel, _, um, uv, pred_bits, markers, class_bits = st
        auto = self.automaton
        row = sid * 256 + byte
        kmax = auto.byte_kmax_view[row]
        alt_view = auto.byte_alt_k0_view
        alts = (alt_view[3 * row], alt_view[3 * row + 1], alt_view[3 * row + 2])
        if rel and iv is not None:
            off = k - k0
            if k <= kmax:
                iv[1] = min(iv[1], kmax - off)
            elif kmax >= 1:
                iv[0] = max(iv[0], kmax - off + 1)
            for alt_k in alts:
                if alt_k >= 0:
                    at = alt_k - off   # the k0 at which this byte ends the block
                    if at == k0:
                        iv[0] = iv[1] = k0
                    elif at > k0:
                        iv[1] = min(iv[1], at - 1)
                    else:
                        iv[0] = max(iv[0], at + 1)
        if k in alts:
            nsid, nk, set_id, mode, value = auto.alt_outcome(row, alts.index(k))
            nrel = False
        elif k <= kmax:
            mul = auto.byte_kmul_view[row]
            nsid, nk = auto.byte_next_view[row], k * mul + auto.byte_kadd_view[row]
            set_id = auto.byte_pred_set_view[row]
            mode, value = auto.byte_pred_mode_view[row], auto.byte_pred_value_view[row]
            nrel = rel and mul == 1
        else:
            return False
        if set_id:
            pred_bits &= pred_preimage(um, uv, auto.pred_sets[set_id], self.all_preds)
            if not pred_bits:
                return False
        if mode == 2:
            um, uv = 2, value
        elif mode == 1:
            um, uv = um or 1, uv + value
        st[:] = [nsid, nk, nrel, int(byte == 0xFF), um, uv, pred_bits, markers, class_bits]
        return True

    def transition(self, entry: MaskEntry, tok: int) -> tuple | None:
        """Token ``tok``'s move from ``entry`` (module docstring), or None if it is never
        valid there. On the sampling path: a few table reads."""
        if entry.eos_only:
            return (S_FIN, 0, False, 0, 0, 0, 0, self.all_preds, self.all_classes) \
                if tok == self.eos_id else None
        if entry.extra and tok in entry.extra:
            return entry.extra[tok]
        if entry.by_token:
            if not 0 <= tok < self.vocab_size:
                return None
            row = entry.sid0 * self.vocab_size + tok
            # (kmax, next, kmul, kadd, pred_set, pred_mode, pred_value, stuff_due)
            tok_views = self._tok_views
            if entry.alt and tok in entry.alt:  # the token ends the block at coefficient 63
                i = entry.alt[tok]
                talt = self._talt_views  # (next, k, pred_set, pred_mode, pred_value)
                return (talt[0][i], talt[1][i], False, tok_views[7][row], talt[3][i],
                        talt[4][i], 0, self._pred_sets[talt[2][i]], self.all_classes)
            if tok_views[0][row] < entry.k0:
                return None
            return (tok_views[1][row], tok_views[3][row], entry.track and tok_views[2][row] == 1,
                    tok_views[7][row], tok_views[5][row], tok_views[6][row], 0,
                    self._pred_sets[tok_views[4][row]], self.all_classes)
        move = entry.moves.get(tok) if entry.moves else None
        if move is None:
            move = self._lane_transition(entry, tok)
            if move is not None:
                if entry.moves is None:
                    entry.moves = {}
                entry.moves[tok] = move
        return move

    def _lane_transition(self, entry: MaskEntry, tok: int) -> tuple | None:
        """Token ``tok``'s move read from ``entry``'s trie lanes (None: never valid)."""
        where = self.trie.token_lane.get(tok)
        if where is None or where[0] >= len(entry.lanes):
            return None
        walk, lane = entry.lanes[where[0]], where[1]
        if not walk.ok[lane]:
            return None
        rel = bool(walk.rel[lane])
        return (int(walk.sid[lane]), int(walk.k[lane]) - (entry.k0 if rel else 0), rel,
                int(walk.ff[lane]), int(walk.um[lane]), int(walk.uv[lane]),
                int(walk.markers[lane]),
                self.all_preds if walk.pred_ok is None else row_bits(walk.pred_ok[lane]),
                walk.class_sets.get(lane, self.all_classes))

    def _run_level(self, lv: TrieLevel, walk: TrieLanes, k0: int, iv: list | None) -> None:
        """Advance every live lane by the last byte of its prefix (in place)."""
        byte = lv.byte
        sid, ok, ff = walk.sid, walk.ok, walk.ff
        scan = ok & (sid > 0)
        ffl = scan & (ff == 1)
        padl = scan & (ff == 0) & (sid == self.pad_state)
        normal = scan & (ff == 0) & (sid != self.pad_state)
        hdr = ok & (sid <= S_HDR)
        other = ok & (sid < 0) & (sid > S_HDR)
        if np.count_nonzero(ffl):  # the stuffed zero after 0xFF
            ok &= ~(ffl & (byte != 0))
            ff[ffl] = 0
        if np.count_nonzero(padl):  # MCU data complete: a marker starts
            ok &= ~(padl & (byte != 0xFF))
            sid[padl & ok] = S_MARK
            walk.rel[padl] = False
        if np.count_nonzero(hdr):
            pos = S_HDR - sid[hdr]
            good = byte[hdr] == self._header_array[pos]
            ok[hdr] = good
            sid[hdr] = np.where(pos + 1 == len(self.header), self.first_dc_state, sid[hdr] - 1)
        if np.count_nonzero(other):
            self._special_lanes(np.flatnonzero(other), byte, walk)
        idx = np.flatnonzero(normal)
        if len(idx):
            self._scan_lanes(idx, byte, walk, k0, iv)

    def _special_lanes(self, lanes: np.ndarray, byte: np.ndarray, walk: TrieLanes) -> None:
        """Marker and after-EOI lanes (rare; plain Python)."""
        for lane in lanes.tolist():
            sid, b = int(walk.sid[lane]), int(byte[lane])
            if sid != S_MARK:
                walk.ok[lane] = False
                continue
            if b == 0xD9:
                classes, nxt = 0xFF00, S_END
            elif 0xD0 <= b <= 0xD7:
                classes, nxt = 1 << (b - 0xD0), self.first_dc_state
            else:
                walk.ok[lane] = False
                continue
            class_bits = (walk.class_sets.get(lane, self.all_classes)
                          & self._class_preimage(int(walk.markers[lane]), classes))
            if not class_bits:
                walk.ok[lane] = False
                continue
            walk.class_sets[lane] = class_bits
            walk.markers[lane] += 1
            walk.sid[lane], walk.k[lane] = nxt, 0
            if nxt == self.first_dc_state:  # the predictor resets to 0
                walk.um[lane], walk.uv[lane] = 2, self.luma_dc_bound

    def _scan_lanes(self, idx: np.ndarray, byte: np.ndarray, walk: TrieLanes, k0: int,
                    iv: list | None) -> None:
        """One entropy-coded byte for lanes ``idx`` via the byte tables (vectorized)."""
        auto = self.automaton
        b = byte[idx]
        rows = walk.sid[idx] * 256 + b
        k = walk.k[idx]
        kmax = auto.byte_kmax[rows]
        valid = k <= kmax
        rel = walk.rel[idx]
        alt_k0 = auto.byte_alt_k0[rows]
        if iv is not None and np.count_nonzero(rel):
            self._narrow_to_lanes(iv, k0, (k - k0)[rel], kmax[rel], valid[rel], alt_k0[rel])
        mul = auto.byte_kmul[rows]
        nsid = auto.byte_next[rows]
        nk = k * mul + auto.byte_kadd[rows]
        set_id = auto.byte_pred_set[rows]
        mode = auto.byte_pred_mode[rows]
        value = auto.byte_pred_value[rows]
        nrel = rel & (mul == 1)
        hit = (alt_k0 == k[:, None]) & (alt_k0 >= 0)
        if np.count_nonzero(hit):  # the byte ends the block at coefficient 63
            h = np.flatnonzero(hit.any(1))
            ai = auto.byte_alt_index[rows[h], np.argmax(hit[h], 1)]
            valid[h] = True
            nsid[h], nk[h], set_id[h] = auto.alt_next[ai], auto.alt_k[ai], auto.alt_pred_set[ai]
            mode[h], value[h], nrel[h] = auto.alt_pred_mode[ai], auto.alt_pred_value[ai], False
        um, uv = walk.um[idx], walk.uv[idx]
        checked = valid & (set_id != 0)
        if np.count_nonzero(checked):
            w = np.flatnonzero(checked)
            lanes = idx[w]
            self._check_preds(walk, lanes, set_id[w], um[w], uv[w])
            valid[w] &= walk.pred_ok[lanes].any(1)
        update = valid & (mode != 0)
        if np.count_nonzero(update):
            setl = update & (mode == 2)
            um[setl], uv[setl] = 2, value[setl]
            shl = update & (mode == 1)
            uv[shl] += value[shl]
            um[shl] = np.where(um[shl] == 0, 1, um[shl])
        walk.ok[idx] = valid
        walk.sid[idx] = nsid
        walk.k[idx] = nk
        walk.rel[idx] = nrel
        walk.ff[idx] = b == 0xFF
        walk.um[idx], walk.uv[idx] = um, uv

    @staticmethod
    def _narrow_to_lanes(iv: list, k0: int, off: np.ndarray, kmax: np.ndarray,
                         valid: np.ndarray, alt_k0: np.ndarray) -> None:
        """Narrow ``iv`` to the k interval on which every decision of these relative
        lanes (k = k0 + ``off``) is the same as at ``k0``."""
        at = kmax - off
        if np.count_nonzero(valid):
            iv[1] = min(iv[1], int(at[valid].min()))
        bad = ~valid & (kmax >= 1)
        if np.count_nonzero(bad):
            iv[0] = max(iv[0], int(at[bad].max()) + 1)
        if np.count_nonzero(alt_k0 >= 0):
            points = (alt_k0 - off[:, None])[alt_k0 >= 0]
            if np.count_nonzero(points == k0):
                iv[0] = iv[1] = k0
            else:
                hi, lo = points[points > k0], points[points < k0]
                if len(hi):
                    iv[1] = min(iv[1], int(hi.min()) - 1)
                if len(lo):
                    iv[0] = max(iv[0], int(lo.max()) + 1)

    def _check_preds(self, walk: TrieLanes, lanes: np.ndarray, set_id: np.ndarray,
                     um: np.ndarray, uv: np.ndarray) -> None:
        """Intersect ``walk.pred_ok`` of ``lanes`` with the starting predictors whose
        image under each lane's update so far ``(um, uv)`` is in predictor set
        ``set_id``."""
        n_preds = self.n_preds
        allowed = self.automaton.pred_set_rows[set_id]   # bool [n, n_preds]
        pre = allowed.copy()
        shift = um == 1
        if np.count_nonzero(shift):
            cols = np.arange(n_preds)[None, :] + uv[shift][:, None]
            inside = (cols >= 0) & (cols < n_preds)
            pre[shift] = np.take_along_axis(allowed[shift], np.clip(cols, 0, n_preds - 1),
                                            1) & inside
        fixed = um == 2
        if np.count_nonzero(fixed):
            pre[fixed] = allowed[fixed, uv[fixed]][:, None]
        if walk.pred_ok is None:
            walk.pred_ok = np.ones((len(walk.ok), n_preds), bool)
        walk.pred_ok[lanes] &= pre

    def _dep_ok(self, entry: MaskEntry, pred: int, mcu_class: int) -> np.ndarray:
        """Which of ``entry.dep_ids`` are allowed for predictor index ``pred`` and MCU
        class ``mcu_class``."""
        ok = self.automaton.pred_set_cols[pred][entry.dep_pred_set]
        if entry.dep_classes is not None:
            ok = ok & entry.dep_classes[:, mcu_class]
        return ok

    def _row_key(self, entry: MaskEntry, pred: int, mcu_class: int) -> tuple:
        return (pred, mcu_class if entry.dep_classes is not None else -1)

    def bias(self, entry: MaskEntry, pred: int, mcu_class: int) -> torch.Tensor:
        """Float32 [vocab_size] additive mask of ``entry`` (0 allowed, -inf not) for
        predictor index ``pred`` and MCU class ``mcu_class``."""
        if entry.biases is None:
            entry.biases = {None: torch.from_numpy(np.where(
                entry.base.numpy(), np.float32(0.0), np.float32("-inf")))}
        if entry.dep_ids is None:
            return entry.biases[None]
        key = self._row_key(entry, pred, mcu_class)
        bias = entry.biases.get(key)
        if bias is None:
            bias = entry.biases[None].clone()
            ok = self._dep_ok(entry, pred, mcu_class)
            if np.count_nonzero(ok):
                bias[torch.from_numpy(entry.dep_ids[ok])] = 0.0
            entry.biases[key] = bias
            self.stats["rows_built"] += 1
        return bias

    def row(self, entry: MaskEntry, pred: int, mcu_class: int) -> torch.Tensor:
        """Bool [vocab_size] mask of ``entry`` for predictor index ``pred`` and MCU class
        ``mcu_class``."""
        if entry.dep_ids is None:
            return entry.base
        key = self._row_key(entry, pred, mcu_class)
        if entry.rows is None:
            entry.rows = {}
        mask = entry.rows.get(key)
        if mask is None:
            mask = entry.base.clone()
            ok = self._dep_ok(entry, pred, mcu_class)
            if np.count_nonzero(ok):
                mask[torch.from_numpy(entry.dep_ids[ok])] = True
            entry.rows[key] = mask
            self.stats["rows_built"] += 1
        return mask

    def cache_info(self) -> dict:
        """Counters plus ``distinct_cores`` (token-boundary cores seen), ``entries``
        (distinct masks computed) and ``hit_rate`` (share of mask calls that did not
        build an entry)."""
        d = dict(self.stats)
        d["distinct_cores"] = len(self.entries)
        d["entries"] = d["entries_built"]
        d["hit_rate"] = 1.0 - d["entries_built"] / max(d["mask_calls"], 1)
        d["automaton_states"] = self.automaton.n_states
        return d



_COMPILED: dict = {}


def compile_grammar(layout: ScanLayout, vocab: Sequence[bytes | None],
                    eos_id: int) -> CompiledScanGrammar:
    """The shared :class:`CompiledScanGrammar` for (layout, vocab, eos) (memoized)."""
    key = (layout, tuple(None if v is None else bytes(v) for v in vocab), eos_id)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = CompiledScanGrammar(layout, key[1], eos_id)
    return compiled
