"""What the grammar caches per token-boundary core: a :class:`MaskEntry`, and the
per-lane state (:class:`TrieLanes`) used while one is built by walking the trie.

A *core* is ``(sid, k, ff)``: the automaton state at a byte boundary (or one of the
``S_*`` ids of :mod:`.automaton` for header, marker, after EOI/EOS), the coefficient
index and whether a stuffed zero byte is due.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(slots=True)
class MaskEntry:
    """The mask and every token's transition (*move*) from one core ``(sid, k0, ff)``.

    ``base`` (bool [vocab_size]) marks tokens valid for every predictor and MCU class.
    Tokens valid only for some are ``dep_ids`` (int64 [n_dep]): their allowed starting
    predictors are the interned bitsets ``dep_pred_set`` (ids into the automaton's
    ``pred_sets``/rows of ``pred_set_rows``) and, if ``dep_classes`` is set, their
    allowed MCU classes the bool rows of ``dep_classes`` [n_dep, n_mcu_classes]. The
    entry serves every k in ``[klo, khi]`` (``k0``: the k it was built for).

    Moves: ``by_token`` entries read them from the token tables of state ``sid0``
    (``alt``: token -> index into the ``alt_*`` token tables, for tokens that end the
    block at coefficient 63 here; ``extra``: token -> move, for tokens walked byte by
    byte); the others from their trie ``lanes`` (one :class:`TrieLanes` per depth),
    memoized in ``moves``. ``biases``/``rows``: the float/bool masks per (predictor,
    MCU class) key, built on demand.
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
    dep_pred_set: np.ndarray | None = None
    dep_classes: np.ndarray | None = None
    biases: dict | None = None
    rows: dict | None = None
    moves: dict | None = None


@dataclass
class TrieLanes:
    """Per-lane state while a core's entry is built: one lane per trie prefix of one
    depth, arrays [n_lanes]."""

    sid: np.ndarray          # int64 state after the prefix
    k: np.ndarray            # int64 coefficient index after it
    rel: np.ndarray          # bool: k is still k0 + offset (same AC block as the core)
    ff: np.ndarray           # int64 1: a stuffed zero byte is due
    ok: np.ndarray           # bool: the prefix is valid for some predictor and MCU class
    um: np.ndarray           # int64 predictor update so far: mode (0 keep, 1 shift, 2 set)
    uv: np.ndarray           # int64 ... and its value
    pred_ok: np.ndarray | None  # bool [n_lanes, n_preds] allowed starting predictors (None: all)
    markers: np.ndarray      # int64 markers (RST/EOI) written since the entry's core
    class_sets: dict         # lane -> bitset of allowed MCU classes (absent: all)

    @classmethod
    def start(cls, n: int, sid: int, k: int, ff: int, rel: bool) -> TrieLanes:
        """``n`` lanes at core ``(sid, k, ff)``."""
        zeros = np.zeros(n, np.int64)
        return cls(np.full(n, sid, np.int64), np.full(n, k, np.int64), np.full(n, rel),
                   np.full(n, ff, np.int64), np.ones(n, bool), zeros, zeros.copy(), None,
                   zeros.copy(), {})

    def gather(self, parent: np.ndarray) -> TrieLanes:
        """The lanes of the next depth, each starting from its ``parent`` lane here."""
        class_sets = {}
        if self.class_sets:
            for child, p in enumerate(parent.tolist()):
                if p in self.class_sets:
                    class_sets[child] = self.class_sets[p]
        return TrieLanes(self.sid[parent], self.k[parent], self.rel[parent], self.ff[parent],
                         self.ok[parent], self.um[parent], self.uv[parent],
                         None if self.pred_ok is None else self.pred_ok[parent],
                         self.markers[parent], class_sets)
