"""A fast, exact BPE encoder for :class:`codeclm.tokenizer.ByteTokenizer` files.

Hugging Face ``tokenizers`` spends ~0.5-2 us per byte on a codec stream (regex split,
per-word heap, offsets and the ``Encoding`` object), as much as decoding and re-encoding
the image. This encoder returns the same ids several times faster, in three steps:

1. **Cut the stream into words that merges cannot cross.** A merge can only ever join
   bytes ``x y`` into one token if ``x y`` occurs *inside* some token of the vocabulary.
   Every other adjacent byte pair, and every unit boundary (the tokenizer's regex split),
   is a hard cut. On JPEG/H.264 bytes only a few dozen of the 65,536 byte pairs occur
   inside tokens, so almost every byte is a word of its own (its byte token) and the
   rest are short words (2-3 bytes on average) drawn from a small set.
2. **Encode each distinct word once** (cached across calls) by applying the merges in
   *rank order*, each to the whole word with ``str.replace`` on a string whose
   characters are token ids: ``replace`` merges every occurrence left to right without
   overlaps (``a a a`` -> ``aa a``), which is what the Hugging Face heap does for equal
   ranks (lowest position first).
3. **Scatter** the words' ids back in stream order with numpy (no per-byte Python).

Step 1 is exact because a token never spans a cut (its bytes would contain the pair),
so words are encoded independently whatever the order. Step 2 is exact when a merge
never creates a pair ranked below itself: that holds when every merge that *uses* a
token ranks after every merge that *produces* it, which is how BPE training builds
merges. Files that break it (hand-edited merges, a merge that re-produces an existing
token after a use), that split differently, or that use BPE features this encoder does
not implement (dropout, unknown token, prefixes/suffixes, ``ignore_merges``) get
``None`` from :meth:`FastBPE.from_backend` and the caller keeps Hugging Face's encoder.
``tests/codeclm/test_tokenizer.py`` checks ids against Hugging Face on real encodings,
the bundled tokenizers and arbitrary byte strings.
"""

from __future__ import annotations

import json

import numpy as np

#: words up to this many bytes are keyed as one integer (longer ones: rare, Python path)
_SHORT = 7
#: the word cache is cleared when it grows past this many entries
_CACHE_LIMIT = 1 << 20


class FastBPE:
    """Exact BPE over one tokenizer's merges; :meth:`encode` returns ids only."""

    def __init__(self, byte_ids: list[int], merges: list[tuple[int, int, int]], modality: str):
        """``byte_ids[b]``: the id of byte ``b``; ``merges``: ``(left, right, merged)`` ids
        in rank order; ``modality``: a registered modality name (its unit marker)."""
        from .modality import record

        self.modality = modality
        self._record = record(modality)
        self._lut = np.asarray(byte_ids, dtype=np.int32)
        self._byte_chars = [chr(i) for i in byte_ids]
        self._merges = [(chr(a) + chr(b), chr(m)) for a, b, m in merges]
        # bytes of every token a merge makes, and the byte pairs found inside them
        spelled = {i: bytes([b]) for b, i in enumerate(byte_ids)}
        self._linked = np.zeros(1 << 16, dtype=bool)  # indexed by (x << 8) | y
        for a, b, m in merges:
            spelled[m] = spelled[a] + spelled[b]
            t = np.frombuffer(spelled[m], dtype=np.uint8).astype(np.int64)  # its bytes
            self._linked[(t[:-1] << 8) | t[1:]] = True
        self._reset_cache()

    @classmethod
    def from_backend(cls, backend, byte_ids: list[int], modality: str) -> FastBPE | None:
        """Build from a ``tokenizers.Tokenizer``; ``None`` if its model is not plain BPE
        with merges in training order (the caller then keeps Hugging Face's encoder)."""
        spec = json.loads(backend.to_str())
        model = spec.get("model") or {}
        if model.get("type") != "BPE" or spec.get("normalizer") is not None:
            return None
        if spec.get("pre_tokenizer") != _unit_split_spec(modality):
            return None  # not the unit split this encoder reproduces
        if any(model.get(k) for k in ("dropout", "unk_token", "continuing_subword_prefix",
                                      "end_of_word_suffix", "byte_fallback", "ignore_merges")):
            return None
        vocab = model.get("vocab") or {}
        merges = []
        for m in model.get("merges") or []:
            left, right = m.split(" ", 1) if isinstance(m, str) else m
            ids = vocab.get(left), vocab.get(right), vocab.get(left + right)
            if None in ids:
                return None
            merges.append(ids)
        if not _rank_order_is_exact(merges):
            return None
        return cls(byte_ids, merges, modality)

    # --- encoding ---------------------------------------------------------------------------
    def encode(self, data: bytes) -> list[int]:
        """Bytes -> token ids (no special tokens), identical to Hugging Face's BPE."""
        return self.encode_array(data).tolist()

    def encode_array(self, data: bytes) -> np.ndarray:
        """:meth:`encode` as an ``int32`` array ``(n_tokens,)`` (no list round trip)."""
        b = np.frombuffer(data, dtype=np.uint8)
        n = len(b)
        out = self._lut[b]
        if n < 2:
            return out
        # 1. words: runs of bytes joined by linked pairs, cut at unit starts; only the
        #    multi-byte words are materialised (single bytes keep their byte token)
        link = self._linked[(b[:-1].astype(np.uint16) << 8) | b[1:]]
        cuts = self._record.unit_starts(data)
        link[cuts[(cuts > 0) & (cuts < n)] - 1] = False
        li = np.flatnonzero(link)  # byte i is joined to byte i + 1
        if not len(li):
            return out  # every byte is its own token
        brk = np.flatnonzero(np.diff(li) != 1)
        ws = li[np.concatenate(([0], brk + 1))]
        wl = li[np.append(brk, len(li) - 1)] - ws + 2
        # 2. each word's bytes as one integer key (length in the top byte; words longer
        #    than _SHORT bytes are rare and looked up one by one), distinct keys encoded
        #    once and remembered as rows of a table of ids
        first = np.cumsum(wl) - wl  # where word j starts in the flat per-word-byte arrays
        offset = np.arange(first[-1] + wl[-1]) - np.repeat(first, wl)  # byte index in word
        pos = np.repeat(ws, wl) + offset  # stream position of each word byte
        shift = np.minimum(offset, _SHORT).astype(np.uint64) * np.uint64(8)
        contrib = np.where(offset < _SHORT, b[pos].astype(np.uint64) << shift, np.uint64(0))
        key = np.add.reduceat(contrib, first) | (wl.astype(np.uint64) << np.uint64(56))
        rows, table = self._rows(data, key, ws, wl)
        # 3. scatter: word j's ids go to ws[j] onward, the rest of its bytes are dropped
        kept = offset < np.repeat(self._nids[rows], wl)
        out[pos[kept]] = table[np.repeat(rows, wl)[kept], offset[kept]]
        keep = np.ones(n, dtype=bool)
        keep[pos[~kept]] = False
        return out[keep]

    def _rows(self, data: bytes, key: np.ndarray, ws: np.ndarray, wl: np.ndarray):
        """(table row of each word, the table): row r holds a word's ids, left-aligned."""
        if len(self._row_of) > _CACHE_LIMIT:
            self._reset_cache()
        short = wl <= _SHORT
        uniq, inverse = np.unique(key[short], return_inverse=True)
        rows = np.empty(len(key), dtype=np.int64)
        row_of = self._row_of
        uniq_rows = [row_of.get(u) or self._add(u, _unpack(u)) for u in uniq.tolist()]
        rows[short] = np.asarray(uniq_rows, dtype=np.int64)[inverse.reshape(-1)]
        for j in np.flatnonzero(~short).tolist():  # long words
            word = data[ws[j]:ws[j] + wl[j]]
            rows[j] = row_of.get(word) or self._add(word, word)
        self._fill_table()
        return rows, self._table

    def _fill_table(self) -> None:
        """Copy rows added since the last call into the ids table (grown by doubling, so
        a new word costs its own row, not a rebuild of every cached one)."""
        n, done = len(self._ids), self._filled
        if n == done:
            return
        width = max(self._table.shape[1], max(len(r) for r in self._ids[done:]))
        if n > len(self._table) or width > self._table.shape[1]:
            rows = len(self._table) if n <= len(self._table) else max(n, 2 * len(self._table))
            table = np.zeros((rows, width), dtype=np.int32)
            table[:done, :self._table.shape[1]] = self._table[:done]
            nids = np.zeros(len(table), dtype=np.int64)
            nids[:done] = self._nids[:done]
            self._table, self._nids = table, nids
        for r in range(done, n):
            ids = self._ids[r]
            self._table[r, :len(ids)] = ids
            self._nids[r] = len(ids)
        self._filled = n

    def _add(self, key, word: bytes) -> int:
        """Encode a new word, give it the next row (rows start at 1: 0 means unknown)."""
        self._ids.append(self._bpe_word(word))
        self._row_of[key] = len(self._ids) - 1
        return len(self._ids) - 1

    def _reset_cache(self) -> None:
        self._row_of: dict = {}
        self._ids: list[list[int]] = [[]]  # row 0 unused, so a row is always truthy
        #: rows of ``_ids`` as a zero-padded int32 array, and each row's id count
        self._table = np.zeros((64, 1), dtype=np.int32)
        self._nids = np.zeros(64, dtype=np.int64)
        self._filled = 1

    def _bpe_word(self, word: bytes) -> list[int]:
        """One word through the merges in rank order (exact, see the module docstring)."""
        text = "".join(self._byte_chars[x] for x in word)
        for pair, merged in self._merges:
            if pair in text:
                text = text.replace(pair, merged)
        return [ord(c) for c in text]


def _unpack(key: int) -> bytes:
    """The bytes of a short word from its integer key (length in the top byte)."""
    n = key >> 56
    return bytes((key >> (8 * i)) & 0xFF for i in range(n))


def _unit_split_spec(modality: str) -> dict | None:
    """The pre-tokenizer JSON that :func:`codeclm.tokenizer._build_backend` writes."""
    from .byte_alphabet import unit_split
    from .modality import find

    if find(modality) is None:
        return None
    pattern, behavior = unit_split(modality)
    return {"type": "Split", "pattern": {"Regex": pattern},
            "behavior": "".join(w.capitalize() for w in behavior.split("_")), "invert": False}


def _rank_order_is_exact(merges: list[tuple[int, int, int]]) -> bool:
    """True when no merge produces a token that a lower-ranked merge consumes.

    Then every pair a merge creates has a higher rank than the merge itself, so applying
    merges one rank at a time over the whole word equals the (rank, position) heap.
    """
    first_use: dict[int, int] = {}
    for rank, (a, b, _) in enumerate(merges):
        first_use.setdefault(a, rank)
        first_use.setdefault(b, rank)
    return all(first_use.get(m, len(merges)) > rank for rank, (_, _, m) in enumerate(merges))
