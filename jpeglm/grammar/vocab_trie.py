"""The vocabulary as a byte trie: one *lane* per distinct token prefix, level by level."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class TrieLevel:
    """Depth ``d + 1`` of the vocabulary's byte trie (``levels[d]``): one lane per
    distinct ``(d + 1)``-byte prefix (depth 1: lane ``b`` is the single byte ``b``)."""

    byte: np.ndarray       # int64 [n_lanes] last byte of the prefix
    parent: np.ndarray     # int64 [n_lanes] lane of the d-byte prefix at the previous level
    tok_ids: np.ndarray    # int64 [n_tokens_here] tokens whose bytes end at this depth
    tok_lane: np.ndarray   # int64 [n_tokens_here] ... and their lanes


class VocabTrie:
    """The byte trie of every token except EOS and special tokens (``None``/empty).

    ``levels[d]``: the :class:`TrieLevel` of prefixes of ``d + 1`` bytes.
    ``token_lane[tok] = (d, lane)``: where token ``tok`` ends. Python-list mirrors for
    the scalar walk: ``last_byte[d][lane]`` (int), ``tokens_at[d][lane]`` (token ids
    ending there), ``children[d][lane]`` (lanes at depth ``d + 1`` below it).
    """

    def __init__(self, vocab: Sequence[bytes | None], eos_id: int):
        lanes: list[dict] = [{bytes((b,)): b for b in range(256)}]  # prefix -> lane, per depth
        ends: list[list] = [[]]                                     # (token, lane), per depth
        self.token_lane: dict[int, tuple[int, int]] = {}
        for tid, data in enumerate(vocab):
            if tid == eos_id or not data:
                continue
            for d in range(1, len(data) + 1):
                if len(lanes) < d:
                    lanes.append({})
                    ends.append([])
                lanes[d - 1].setdefault(data[:d], len(lanes[d - 1]))
            ends[len(data) - 1].append((tid, lanes[len(data) - 1][data]))
            self.token_lane[tid] = (len(data) - 1, lanes[len(data) - 1][data])
        self.last_byte = [[p[-1] for p in sorted(lv, key=lv.get)] for lv in lanes]
        self.tokens_at: list[list[list[int]]] = [[[] for _ in lv] for lv in lanes]
        for d, ending in enumerate(ends):
            for tid, lane in ending:
                self.tokens_at[d][lane].append(tid)
        self.children: list[list[list[int]]] = [[[] for _ in lv] for lv in lanes]
        for d in range(1, len(lanes)):
            for prefix, lane in lanes[d].items():
                self.children[d - 1][lanes[d - 1][prefix[:-1]]].append(lane)
        self.levels: list[TrieLevel] = []
        for d, lv in enumerate(lanes):
            prefixes = sorted(lv, key=lv.get)
            self.levels.append(TrieLevel(
                byte=np.array([p[-1] for p in prefixes], np.int64),
                parent=np.array([lanes[d - 1][p[:-1]] if d else 0 for p in prefixes], np.int64),
                tok_ids=np.array([t for t, _ in ends[d]], np.int64),
                tok_lane=np.array([lane for _, lane in ends[d]], np.int64)))
