"""The JPEG scan grammar: every sampled stream decodes strictly, no canonical stream is
rejected, and masks are exact.

Validity is judged by checks that do not share code with the grammar:

* :class:`RefScan`, written here from the tables Pillow itself writes (DHT/DQT of a
  ``streamtype=1`` stream): a plain bit-string Huffman parser with the same rules
  (incl. DC range), usable incrementally on prefixes (a prefix is valid if the parse
  so far is valid and the pending bits can still be completed: checked by search);
* ``jpeglm.codec.decode(strict=True)`` (the codec's own pure-Python scan walk, then
  libjpeg via Pillow at the profile's size).

Pillow/libjpeg alone is not a strict check: it silently accepts wrong restart markers,
flipped bits and out-of-range DC values (shown below), so it only confirms size.
"""

from __future__ import annotations

import copy
import io
import math
import random

import numpy as np
import pytest
import torch
from PIL import Image

from codeclm.errors import DecodeError, ProfileError, TokenizerError
from jpeglm import codec
from jpeglm.grammar import GrammarError, JpegGrammarLogitsProcessor, JpegScanGrammar, parse_layout
from jpeglm.huffman import STANDARD_TABLES, parse_dht
from jpeglm.profile import PROFILES


# ------------------------------------------------------------------ vocabularies
def byte_vocab() -> tuple[list, int]:
    """256 byte tokens, then BOS (None) and EOS."""
    return [bytes((b,)) for b in range(256)] + [None, None], 257


def _images(n_random: int, seed: int = 0) -> list[Image.Image]:
    """Varied synthetic images: flat colours (incl. the DC extremes), gradients,
    checkerboards, stripes, noise, smooth random fields, text-like blocks."""
    rng = np.random.default_rng(seed)
    ims = [Image.new("RGB", (64, 64), c) for c in
           [(0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0),
            (0, 255, 255), (128, 128, 128)]]
    x = np.linspace(0, 255, 64)
    ims.append(Image.fromarray(np.stack([np.tile(x, (64, 1))] * 3, -1).astype(np.uint8)))
    ims.append(Image.fromarray(np.stack([np.tile(x[:, None], (1, 64)), np.tile(x, (64, 1)),
                                         255 - np.tile(x, (64, 1))], -1).astype(np.uint8)))
    cb = (np.indices((64, 64)).sum(0) // 4 % 2 * 255).astype(np.uint8)
    ims.append(Image.fromarray(np.stack([cb, 255 - cb, cb], -1)))
    stripes = (np.arange(64) % 2 * 255).astype(np.uint8)
    ims.append(Image.fromarray(np.stack([np.tile(stripes, (64, 1))] * 3, -1)))
    ims.append(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    for _ in range(n_random):
        k = int(rng.integers(2, 16))
        small = rng.integers(0, 256, (k, k, 3)).astype(np.uint8)
        ims.append(Image.fromarray(small).resize((64, 64), Image.Resampling.BICUBIC))
    return ims


@pytest.fixture(scope="session")
def tiny_streams(tiny, samples):
    """Canonical tiny-profile encodings of >= 20 varied images (bundled + synthetic)."""
    ims = [Image.open(p) for p in samples] + _images(12)
    return [codec.encode_image(im, tiny) for im in ims]


@pytest.fixture(scope="session")
def ngram_vocab(tiny_streams):
    """A BPE-like vocabulary: the 256 bytes, BOS, EOS, then the 62 most frequent byte
    pairs/triples of real scan data, plus tokens that span a marker."""
    from collections import Counter

    hdr_len = len(codec.header(PROFILES["tiny"]))
    cnt: Counter = Counter()
    for s in tiny_streams:
        scan = s[hdr_len:]
        for n in (2, 3):
            cnt.update(scan[i:i + n] for i in range(len(scan) - n + 1))
    extra = [b"\xff\xd0", b"\xff\xd9", b"\x00\xff", b"\x8a\x00\xff\xd1", b"\xa2\x8a\x00\xff"]
    grams = [g for g, _ in cnt.most_common(200) if g not in extra][:62 - len(extra)]
    vocab = [bytes((b,)) for b in range(256)] + [None, None] + grams + extra
    assert len(vocab) == 320 and len(set(vocab[258:])) == 62
    return vocab, 257


def greedy_tokens(data: bytes, vocab: list) -> list[int]:
    """Longest-match tokenization (any tokenization must be accepted)."""
    index = {v: i for i, v in enumerate(vocab) if v}
    maxlen = max(len(v) for v in index)
    out, i = [], 0
    while i < len(data):
        for n in range(min(maxlen, len(data) - i), 0, -1):
            t = index.get(data[i:i + n])
            if t is not None:
                out.append(t)
                i += n
                break
    return out


# ------------------------------------------------------------------ independent reference
def _codes(spec_bits, spec_vals) -> dict[str, int]:
    out, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(spec_bits[length - 1]):
            out[format(code, f"0{length}b")] = spec_vals[k]
            code += 1
            k += 1
        code <<= 1
    return out


def _pillow_tables(profile) -> tuple[dict, dict]:
    """(Huffman code dicts by (class, id), DC quantizer by table id) from Pillow."""
    buf = io.BytesIO()
    Image.new("RGB", profile.size).save(buf, "JPEG", **profile.pillow_save_kwargs(1))
    data = buf.getvalue()
    huff, qdc, i = {}, {}, 2
    while data[i:i + 2] != b"\xff\xd9":
        m, n = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        seg = data[i + 4:i + 2 + n]
        j = 0
        while j < len(seg):
            if m == 0xC4:
                bits, nv = seg[j + 1:j + 17], sum(seg[j + 1:j + 17])
                huff[(seg[j] >> 4, seg[j] & 15)] = _codes(bits, seg[j + 17:j + 17 + nv])
                j += 17 + nv
            elif m == 0xDB:
                qdc[seg[j] & 15] = seg[j + 1]
                j += 65
            else:
                break
        i += 2 + n
    return huff, qdc


class RefScan:
    """Independent incremental validator of modeled bytes (header, scan, EOI).

    Same language as the grammar: canonical header; per MCU 4 Y + Cb + Cr blocks;
    standard codes; <= 63 AC coefficients; no EOB right after ZRL; ZRL only if a
    coefficient still fits after it; |DC| <= ceil(1024 / q_dc) with the luma
    predictor chained through the MCU; one-bit padding; stuffing; RST(i % 8); EOI.
    """

    def __init__(self, profile):
        huff, qdc = _pillow_tables(profile)
        self.header = codec.header(profile)
        self.n = profile.mcu_count
        self.blocks = [(huff[(0, 0)], huff[(1, 0)], 0)] * 4 + [(huff[(0, 1)], huff[(1, 1)], 1),
                                                               (huff[(0, 1)], huff[(1, 1)], 2)]
        self.bound = [math.ceil(1024 / qdc[0]), math.ceil(1024 / qdc[1]),
                      math.ceil(1024 / qdc[1])]
        self.phase, self.hpos, self.mcu = "hdr", 0, 0
        self.dc_values: list[int] = []
        self._new_mcu()

    def _new_mcu(self):
        self.blk, self.k, self.zrl, self.pred, self.bits = 0, 0, False, 0, ""
        self.ff = self.done_mcu = False

    def clone(self) -> RefScan:
        c = copy.copy(self)
        c.dc_values = []
        return c

    # one symbol from self.bits: "ok" (consumed), "more" (needs bits), "bad"
    def _symbol(self) -> str:
        if self.blk == 6:
            if set(self.bits) - {"1"}:
                return "bad"
            self.bits, self.done_mcu = "", True
            return "more"
        dc, ac, comp = self.blocks[self.blk]
        table = dc if self.k == 0 else ac
        for n in range(1, min(16, len(self.bits)) + 1):
            sym = table.get(self.bits[:n])
            if sym is not None:
                break
        else:
            return "bad" if len(self.bits) >= 16 else "more"
        if self.k == 0:
            if len(self.bits) < n + sym:
                return "more"
            v = int(self.bits[n:n + sym], 2) if sym else 0
            diff = v if sym == 0 or v >> (sym - 1) else v - (1 << sym) + 1
            pred = self.pred if comp == 0 and self.blk > 0 else 0
            dcv = pred + diff
            if abs(dcv) > self.bound[comp]:
                return "bad"
            self.dc_values.append(dcv)
            if comp == 0:
                self.pred = dcv
            self.bits, self.k = self.bits[n + sym:], 1
            return "ok"
        run, size = sym >> 4, sym & 15
        if size == 0:
            if run == 0:
                if self.zrl:
                    return "bad"
                self.bits, self.blk, self.k = self.bits[n:], self.blk + 1, 0
                return "ok"
            if run != 15 or self.k + 16 > 63:
                return "bad"
            self.bits, self.k, self.zrl = self.bits[n:], self.k + 16, True
            return "ok"
        if self.k + run > 63:
            return "bad"
        if len(self.bits) < n + size:
            return "more"
        self.bits, self.k, self.zrl = self.bits[n + size:], self.k + run + 1, False
        if self.k == 64:
            self.blk, self.k = self.blk + 1, 0
        return "ok"

    def _decode(self) -> bool:
        while True:
            r = self._symbol()
            if r == "bad":
                return False
            if r == "more":
                return True

    def _completable(self, depth: int = 0) -> bool:
        """Can the pending bits be extended to a complete symbol (search)?"""
        if not self.bits or self.done_mcu:
            return True
        for b in "01":
            c = copy.copy(self)
            c.dc_values = []
            c.bits += b
            r = c._symbol()
            if r == "ok" or (r == "more" and depth < 30 and c._completable(depth + 1)):
                return True
        return False

    def feed(self, data: bytes) -> bool:
        """Consume bytes; False if they cannot start or continue a valid stream."""
        for b in data:
            if not self._byte(b):
                return False
        return self._completable()

    def _byte(self, b: int) -> bool:
        if self.phase == "hdr":
            if b != self.header[self.hpos]:
                return False
            self.hpos += 1
            if self.hpos == len(self.header):
                self.phase = "scan"
            return True
        if self.phase == "end":
            return False
        if self.phase == "mark":
            last = self.mcu == self.n - 1
            if b != (0xD9 if last else 0xD0 + self.mcu % 8):
                return False
            self.phase = "end" if last else "scan"
            self.mcu += 1
            self._new_mcu()
            return True
        if self.ff:
            self.ff = False
            return b == 0
        if self.done_mcu:
            if b != 0xFF:
                return False
            self.phase = "mark"
            return True
        self.bits += format(b, "08b")
        self.ff = b == 0xFF
        return self._decode()

    @property
    def complete(self) -> bool:
        return self.phase == "end"


def strict_ok(data: bytes, profile) -> list[int]:
    """Full strict check: reference parse complete, codec strict decode, Pillow size.
    Returns the decoded DC values (for range checks)."""
    ref = RefScan(profile)
    assert ref.feed(data) and ref.complete, "reference rejects the stream"
    im = codec.decode(data, profile, strict=True)
    assert im.size == profile.size
    return ref.dc_values


def walk(g: JpegScanGrammar, rng: random.Random, limit: int = 20_000) -> list[int]:
    """A uniform random walk over allowed tokens until EOS."""
    out = []
    while not g.finished:
        ids = torch.nonzero(g.allowed_mask()).flatten().tolist()
        assert ids, f"dead end at {g.describe()}"
        t = rng.choice(ids)
        g.advance(t)
        out.append(t)
        assert len(out) < limit
    return out


def decode_tokens(ids: list[int], vocab, eos) -> bytes:
    assert ids[-1] == eos
    return b"".join(vocab[t] for t in ids[:-1])


# ------------------------------------------------------------------ tables and header
def test_standard_tables_match_what_pillow_writes(tiny):
    huff, _ = _pillow_tables(tiny)
    segs = codec.tables(tiny)
    i, parsed = 0, {}
    while i < len(segs):
        n = int.from_bytes(segs[i + 2:i + 4], "big")
        if segs[i + 1] == 0xC4:
            parsed.update(parse_dht(segs[i + 4:i + 2 + n]))
        i += 2 + n
    assert parsed == STANDARD_TABLES
    for (tc, th), codes in huff.items():
        ours = STANDARD_TABLES[(tc << 4) | th].codes()
        assert {format(c, f"0{n}b"): s for s, (c, n) in ours.items()} == codes


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_header_and_layout_follow_the_profile(name):
    profile = PROFILES[name]
    vocab, eos = byte_vocab()
    g = JpegScanGrammar.from_profile(profile, vocab, eos)
    lay = g.compiled.layout
    assert lay.header == codec.header(profile)
    assert len(lay.header) == 59
    assert lay.n_mcus == profile.mcu_count == g.n_mcus
    assert [c for c, _, _ in lay.blocks] == [0, 0, 0, 0, 1, 2]
    _, qdc = _pillow_tables(profile)
    assert lay.dc_bound == (math.ceil(1024 / qdc[0]),) + (math.ceil(1024 / qdc[1]),) * 2
    g2 = JpegScanGrammar(profile.width, profile.height, vocab, eos)
    assert g2.compiled is g.compiled  # same layout and vocabulary: one compiled grammar


def test_layout_rejects_unsupported_headers(tiny):
    hdr = codec.header(tiny)
    no_dri = hdr.replace(b"\xff\xdd\x00\x04\x00\x01", b"")
    with pytest.raises(ProfileError):
        parse_layout(no_dri, None)
    with pytest.raises(ProfileError):
        JpegScanGrammar(64, 32, byte_vocab()[0], 257, header=hdr)
    with pytest.raises(TokenizerError):  # a vocabulary without every byte can dead-end
        JpegScanGrammar.from_profile(tiny, [bytes((b,)) for b in range(255)] + [None], 255)


# ------------------------------------------------------------------ the strict checks can fail
def test_strict_checks_reject_corruption_that_pillow_accepts(tiny, tiny_streams):
    hdr = len(codec.header(tiny))
    data = next(d for d in tiny_streams if b"\xff\x00" in d[hdr:])  # has stuffing
    strict_ok(data, tiny)
    i = data.index(b"\xff\xd3")
    wrong_rst = data[:i + 1] + b"\xd5" + data[i + 2:]
    flipped = bytearray(data)
    flipped[hdr + 40] ^= 0x10
    j = data.index(b"\xff\x00", hdr)
    cases = {"wrong restart marker": wrong_rst, "flipped bit": bytes(flipped),
             "missing stuffed zero": data[:j + 1] + data[j + 2:],
             "truncated": data[:-30], "extra byte": data + b"\x00",
             "cut before EOI": data[:-2]}
    assert _complete(data, tiny) and _grammar_accepts(data, tiny)
    for why, bad in cases.items():
        assert not _complete(bad, tiny), why
        assert not _grammar_accepts(bad, tiny), why
        with pytest.raises(DecodeError):
            codec.decode(bad, tiny, strict=True)
    # libjpeg (through Pillow) decodes these two without any error or warning
    for bad in (wrong_rst, bytes(flipped)):
        im = Image.open(io.BytesIO(codec.to_jpeg(bad, tiny)))
        im.load()
        assert im.size == tiny.size


def _complete(data: bytes, profile) -> bool:
    ref = RefScan(profile)
    return ref.feed(data) and ref.complete


def _grammar_accepts(data: bytes, profile) -> bool:
    g = JpegScanGrammar.from_profile(profile, *byte_vocab())
    try:
        g.feed_bytes(data)
    except GrammarError:
        return False
    return g.done


# ------------------------------------------------------------------ hand-built edge cases
class _Writer:
    """Encode coefficient blocks with the standard codes (test-side encoder)."""

    def __init__(self, profile):
        huff, _ = _pillow_tables(profile)
        self.codes = {k: {s: c for c, s in v.items()} for k, v in huff.items()}
        self.header = codec.header(profile)
        self.n = profile.mcu_count

    @staticmethod
    def _bits(v: int) -> tuple[int, str]:
        s = abs(v).bit_length()
        return s, format(v if v > 0 else v + (1 << s) - 1, f"0{s}b") if s else ""

    def block(self, comp: int, dc_diff: int, acs=(), eob=True) -> str:
        t = 0 if comp == 0 else 1
        s, extra = self._bits(dc_diff)
        out = self.codes[(0, t)][s] + extra
        for run, val in acs:
            if val == 0:  # ZRL
                out += self.codes[(1, t)][0xF0]
                continue
            s, extra = self._bits(val)
            out += self.codes[(1, t)][(run << 4) | s] + extra
        return out + (self.codes[(1, t)][0x00] if eob else "")

    def mcu(self, blocks: list[str]) -> bytes:
        s = "".join(blocks)
        s += "1" * (-len(s) % 8)
        return int(s, 2).to_bytes(len(s) // 8, "big").replace(b"\xff", b"\xff\x00")

    def stream(self, mcus: list[bytes]) -> bytes:
        mcus = mcus + [self.mcu([self.block(c, 0) for c in (0, 0, 0, 0, 1, 2)])] * (
            self.n - len(mcus))
        out = self.header
        for i, m in enumerate(mcus):
            out += m + (bytes((0xFF, 0xD0 + i % 8)) if i < self.n - 1 else b"\xff\xd9")
        return out


def test_edge_case_streams_are_accepted(tiny):
    w = _Writer(tiny)
    full63 = [(0, 1)] * 63  # every AC coefficient non-zero: the block ends without EOB
    zrls = [(0, 0), (0, 0), (0, 0), (2, 5), (0, -3)]  # 3 ZRLs, then k=51, 52
    mcus = [
        w.mcu([w.block(0, 32), w.block(0, -64), w.block(0, 64), w.block(0, -32),
               w.block(1, 31), w.block(2, -31)]),                     # DC at +-bound
        w.mcu([w.block(0, 0, full63, eob=False)] + [w.block(c, 0) for c in (0, 0, 0, 1, 2)]),
        w.mcu([w.block(0, 1, zrls)] + [w.block(c, 0, [(14, 1)]) for c in (0, 0, 0, 1, 2)]),
        w.mcu([w.block(0, 0, [(0, 1023), (0, -1023), (0, 0), (0, 0), (15, 1)])] +
              [w.block(c, 0) for c in (0, 0, 0, 1, 2)]),               # run to k = 50
        w.mcu([w.block(0, 0, [(0, 0)] * 3 + [(14, -1)], eob=False)] +  # coefficient 63
              [w.block(c, 0) for c in (0, 0, 0, 1, 2)]),
    ]
    data = w.stream(mcus)
    assert b"\xff\x00" in data[len(w.header):]  # ZRL codes force byte stuffing
    dcs = strict_ok(data, tiny)
    assert dcs[:6] == [32, -32, 32, 0, 31, -31]
    g = JpegScanGrammar.from_profile(tiny, *byte_vocab())
    g.feed_bytes(data)
    assert g.done and g.mcu_index == tiny.mcu_count


def test_dc_out_of_range_is_rejected_though_libjpeg_decodes_it(tiny):
    w = _Writer(tiny)
    for blocks, comp_name in (
            ([w.block(0, 33)] + [w.block(c, 0) for c in (0, 0, 0, 1, 2)], "luma"),
            ([w.block(0, 32), w.block(0, 1)] + [w.block(c, 0) for c in (0, 0, 1, 2)],
             "chained luma"),
            ([w.block(c, 0) for c in (0, 0, 0, 0, 1)] + [w.block(2, 32)], "chroma")):
        data = w.stream([w.mcu(blocks)])
        assert not RefScan(tiny).feed(data), comp_name
        g = JpegScanGrammar.from_profile(tiny, *byte_vocab())
        with pytest.raises(GrammarError):
            g.feed_bytes(data)
        codec.decode(data, tiny, strict=True)  # syntactically fine for every decoder
    # far out of range, libjpeg wraps: a 2047-per-block DC staircase comes out mid-grey
    data = w.stream([w.mcu([w.block(0, 2047)] * 4 + [w.block(c, 0) for c in (1, 2)])])
    im = np.asarray(codec.decode(data, tiny, strict=True).convert("L"))
    assert im[:16, :16].max() < 200


# ------------------------------------------------------------------ random walks
def _walks(profile, vocab, eos, n: int, seed: int) -> tuple[int, int]:
    g0 = JpegScanGrammar.from_profile(profile, vocab, eos)
    rng = random.Random(seed)
    tokens = multi = 0
    for _ in range(n):
        g = g0.copy()
        g.reset()
        ids = walk(g, rng)
        data = decode_tokens(ids, vocab, eos)
        dcs = strict_ok(data, profile)
        assert all(abs(v) <= 32 for v in dcs)
        assert g.mcu_index == profile.mcu_count
        tokens += len(ids)
        multi += sum(1 for t in ids[:-1] if len(vocab[t]) > 1)
    return tokens, multi


def test_random_walks_decode_strictly_quick(tiny, ngram_vocab):
    tokens, multi = _walks(tiny, *ngram_vocab, n=12, seed=1)
    assert tokens > 12 * 300
    assert multi > 0


@pytest.mark.slow
def test_random_walks_decode_strictly(tiny, ngram_vocab):
    """>= 1000 uniform random walks (256 bytes + 62 multi-byte tokens), all strict."""
    tokens, multi = _walks(tiny, *ngram_vocab, n=1000, seed=2)
    assert tokens > 100_000 and multi > 1000


# ------------------------------------------------------------------ real streams accepted
def _accept(profile, data: bytes, vocab, eos, check_mask: bool) -> None:
    g = JpegScanGrammar.from_profile(profile, vocab, eos)
    for t in greedy_tokens(data, vocab):
        if check_mask:
            assert g.allowed_mask()[t], g.describe()
        assert g.is_allowed(t)
        g.advance(t)
    assert g.done and g.mcu_index == profile.mcu_count
    assert torch.nonzero(g.allowed_mask()).flatten().tolist() == [eos]
    g.advance(eos)
    assert g.finished


def test_real_encodings_are_accepted_tiny(tiny, tiny_streams, ngram_vocab):
    assert len(tiny_streams) >= 20
    for data in tiny_streams:
        strict_ok(data, tiny)
        _accept(tiny, data, *byte_vocab(), check_mask=True)
        _accept(tiny, data, *ngram_vocab, check_mask=True)


def test_real_encodings_are_accepted_paper(paper, samples, ngram_vocab):
    ims = [Image.open(p) for p in samples] + [im.resize((256, 256)) for im in _images(0)]
    assert len(ims) >= 20
    for im in ims:
        data = codec.encode_image(im, paper)
        _accept(paper, data, *byte_vocab(), check_mask=False)
        _accept(paper, data, *ngram_vocab, check_mask=True)


def test_trained_bpe_tokenizer_vocabulary(tiny, tiny_streams):
    from codeclm.tokenizer import ByteTokenizer

    tok = ByteTokenizer.train(tiny_streams, 300, "jpeg")
    g0 = JpegScanGrammar.from_profile(tiny, tok.token_bytes, tok.eos_id)
    for data in tiny_streams[:6]:
        g = g0.copy()
        ids = tok.encode(data, bos=True, eos=True)
        for t in ids[1:]:
            assert g.allowed_mask()[t], g.describe()
            g.advance(t)
        assert g.finished
    g = g0.copy()
    ids = walk(g, random.Random(3))
    strict_ok(tok.decode(ids), tiny)


# ------------------------------------------------------------------ masks are exact
def test_masks_are_exact(tiny, tiny_streams, ngram_vocab):
    """At states from real streams and random walks, a token is allowed iff its bytes
    continue a valid stream: checked against the grammar's own byte-by-byte path and
    against the independent reference."""
    vocab, eos = ngram_vocab
    g0 = JpegScanGrammar.from_profile(tiny, vocab, eos)
    rng = random.Random(5)
    states = []  # (grammar, bytes so far)
    for data in tiny_streams[:3]:
        g, so_far = g0.copy(), b""
        for i, t in enumerate(greedy_tokens(data, vocab)):
            if i % 97 == 5:
                states.append((g.copy(), so_far))
            g.advance(t)
            so_far += vocab[t]
    pad = g0.compiled.pad_state
    special = 0
    for _ in range(3):
        g, so_far = g0.copy(), b""
        while not g.done:
            sid, _, ff = g.state()[0]
            odd = ff or sid < 0 or sid == pad  # stuffing due, end of MCU, marker, header
            special += odd
            if odd or rng.random() < 0.08:
                states.append((g.copy(), so_far))
            ids = torch.nonzero(g.allowed_mask()).flatten().tolist()
            t = rng.choice(ids)
            g.advance(t)
            so_far += vocab[t]
        states.append((g.copy(), so_far))
    assert len(states) > 60 and special > 40
    n_ref = 0
    for g, so_far in states:
        mask = g.allowed_mask().tolist()
        ref = RefScan(tiny)
        assert ref.feed(so_far)
        use_ref = n_ref < 40 or rng.random() < 0.15
        for t, v in enumerate(vocab):
            if v is None:
                expect = t == eos and g.done
            else:
                h = g.copy()
                try:
                    h.feed_bytes(v)
                    expect = True
                except GrammarError:
                    expect = False
                if use_ref:
                    assert ref.clone().feed(v) == expect, (g.describe(), v.hex())
            assert mask[t] == expect, (g.describe(), t, v)
            assert g.is_allowed(t) == expect
        n_ref += use_ref
    info = g0.compiled.cache_info()
    assert info["entries_built"] > 50 and info["distinct_cores"] >= info["entries_built"]


# ------------------------------------------------------------------ API
def test_api_state_copy_errors(tiny, tiny_streams, ngram_vocab):
    vocab, eos = ngram_vocab
    g = JpegScanGrammar.from_profile(tiny, vocab, eos)
    assert not g.done and g.mcu_index == 0 and g.vocab_size == len(vocab)
    with pytest.raises(GrammarError, match="only allowed after EOI"):
        g.advance(eos)
    with pytest.raises(GrammarError, match="never allowed"):
        g.advance(256)
    with pytest.raises(GrammarError):
        g.advance(0x00)  # the header starts with FF D8
    data = tiny_streams[1]
    prompt = codec.prompt_prefix(data, 0.5, tiny)
    g.feed_bytes(prompt)
    assert g.mcu_index == tiny.mcu_count // 2
    snap = g.state()
    c = g.copy()
    rest = greedy_tokens(data[len(prompt):], vocab)
    for t in rest[:10]:
        c.advance(t)
    assert g.state() == snap and c.state() != snap
    c.restore(snap)
    assert c.state() == snap
    for t in rest:
        c.advance(t)
    assert c.done and not c.finished and c.mcu_index == tiny.mcu_count
    c.advance(eos)
    assert c.finished and c.done
    c.advance(eos)  # idempotent after EOS
    assert torch.nonzero(c.allowed_mask()).flatten().tolist() == [eos]
    with pytest.raises(GrammarError, match="cannot continue"):
        g.feed_bytes(b"\xff\xd9")  # EOI in the middle of the image
    bias = g.allowed_bias()
    assert torch.equal(bias == 0, g.allowed_mask())
    logits = torch.randn(len(vocab) + 3)
    masked = g.mask_logits(logits)
    assert torch.isinf(masked[len(vocab):]).all()
    assert torch.equal(~torch.isinf(masked[:len(vocab)]), g.allowed_mask())
    g.reset()
    assert g.state() == JpegScanGrammar.from_profile(tiny, vocab, eos).state()
    # the scan alone (header not modeled), and an explicit header/tables
    hdr = codec.header(tiny)
    scan_only = JpegScanGrammar(64, 64, vocab, eos, include_header=False)
    scan_only.feed_bytes(data[len(hdr):])
    assert scan_only.done
    explicit = JpegScanGrammar(64, 64, vocab, eos, header=hdr, tables=codec.tables(tiny))
    assert explicit.compiled is g.compiled


def test_logits_processor_with_transformers_generate(tiny):
    from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

    vocab, eos = byte_vocab()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
        bos_token_id=256, eos_token_id=eos, pad_token_id=eos)).eval()
    template = JpegScanGrammar.from_profile(tiny, vocab, eos)
    w = _Writer(tiny)
    blank = w.mcu([w.block(c, 0) for c in (0, 0, 0, 0, 1, 2)])

    def upto(k):  # header + k blank MCUs, each closed by its restart marker
        return codec.header(tiny) + b"".join(blank + bytes((0xFF, 0xD0 + i % 8))
                                             for i in range(k))

    prompts = [[256] + list(upto(13)), [256] + list(upto(15))]
    out = []
    for prompt in prompts:  # unequal lengths: one call each (no padding needed)
        proc = JpegGrammarLogitsProcessor(template, prompt_len=len(prompt))
        ids = model.generate(torch.tensor([prompt]), do_sample=True, max_new_tokens=3000,
                             logits_processor=LogitsProcessorList([proc]),
                             eos_token_id=eos, pad_token_id=eos)
        gen = ids[0, len(prompt):].tolist()
        assert gen[-1] == eos and proc.rows[0].done
        out.append(bytes(prompt[1:]) + bytes(gen[:-1]))
    for data, k in zip(out, (13, 15)):
        strict_ok(data, tiny)
        assert data.startswith(upto(k))


def test_batch_processor_rows_are_independent(tiny):
    vocab, eos = byte_vocab()
    template = JpegScanGrammar.from_profile(tiny, vocab, eos)
    proc = JpegGrammarLogitsProcessor(template)
    hdr = list(codec.header(tiny))
    ids = torch.tensor([[256] + hdr, [eos] + hdr])  # BOS / left padding are skipped
    scores = proc(ids, torch.zeros(2, len(vocab) + 2))
    assert torch.equal(torch.isfinite(scores[0]), torch.isfinite(scores[1]))
    assert not torch.isfinite(scores[:, len(vocab):]).any()
    ids = torch.cat([ids, torch.tensor([[0x00], [0x14]])], 1)
    scores = proc(ids, torch.zeros(2, len(vocab)))
    for r, byte in enumerate((0x00, 0x14)):
        g = template.copy()
        g.feed_bytes(bytes(hdr) + bytes((byte,)))
        assert proc.rows[r].state() == g.state()
        assert torch.equal(torch.isfinite(scores[r]), g.allowed_mask())
    assert proc.rows[0].state() != proc.rows[1].state()


def test_shared_sampler_constraint_hook(tiny, tiny_streams):
    """The grammar plugs into ``codeclm.generation`` as a per-row constraint."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from codeclm.generation.sampling_config import SamplingConfig
    from codeclm.generation.session import generate
    from codeclm.tokenizer import ByteTokenizer

    tok = ByteTokenizer.train(tiny_streams, 300, "jpeg")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096)).eval()
    head = codec.prompt_prefix(tiny_streams[0], 0.75, tiny)  # 12 of 16 MCUs
    prompt = tok.encode(head, bos=True, eos=False)
    g = JpegScanGrammar.from_profile(tiny, tok.token_bytes, tok.eos_id)
    g.feed_bytes(head)
    res = generate(model, tok, [prompt, prompt], SamplingConfig(seed=0),
                   max_new_tokens=3000, constraints=[g.copy(), g.copy()])
    assert res.reasons == ["eos", "eos"]
    assert res.tokens[0] != res.tokens[1]
    for ids in res.tokens:
        strict_ok(head + tok.decode(ids), tiny)


def _greedy_encoder(vocab):
    """A tokenizer's ``encode`` for ``vocab`` (special ids None): longest match first."""
    ids = {v: i for i, v in enumerate(vocab) if v is not None}
    longest = max(len(v) for v in ids)

    def encode(data: bytes) -> list[int]:
        out, i = [], 0
        while i < len(data):
            n = next(n for n in range(min(longest, len(data) - i), 0, -1)
                     if data[i:i + n] in ids)
            out.append(ids[data[i:i + n]])
            i += n
        return out

    return encode


@pytest.mark.parametrize("merges", [False, True])
def test_finish_early_ends_an_mcu_plainly(tiny, tiny_streams, ngram_vocab, merges):
    """Inside an MCU's data, a token holding a restart marker gets finish_early's tokens
    (single bytes; with the grammar's ``encode`` set, the tokenizer's merges, marker
    included where they fit, fewer tokens for the same bytes at least once): with them
    and the original stream from that MCU's marker on, the stream is
    still valid (restart markers reset the DC predictors), they are never more than one
    byte longer than what the encoder wrote up to the marker, and from an MCU's first
    byte they code a flat mid-grey MCU (each block a DC difference of 0 and an
    end-of-block); the marker token follows them where its marker is the one due.
    Outside an MCU's data (a header byte, a marker due), for a token
    with no marker, and with ``finishes_early`` off there are none."""
    import re

    vocab, eos = ngram_vocab
    marker, plain = vocab.index(b"\xff\xd0"), vocab.index(b"\x8a")
    base = JpegScanGrammar.from_profile(tiny, vocab, eos)
    if merges:
        base.encode = _greedy_encoder(vocab)
    hdr = len(codec.header(tiny))
    rng = random.Random(4)
    checked = flat = none_outside = kept = merged = 0
    for data in tiny_streams[:10]:
        marks = [m.start() for m in re.finditer(rb"\xff[\xd0-\xd7\xd9]", data[hdr:])]
        starts = [hdr] + [hdr + m + 2 for m in marks[:-1]]
        for pos in rng.sample(range(1, len(data) - 1), 12) + starts[:3]:
            g = base.copy()
            g.feed_bytes(data[:pos])
            got = g.finish_early(marker)
            end = next((hdr + m for m in marks if hdr + m >= pos), None)
            if got is None:
                none_outside += pos < hdr or end == pos or data[pos - 1] == 0xFF
                continue
            assert g.finish_early(plain) is None
            off = g.copy()
            off.finishes_early = False
            assert off.finish_early(marker) is None
            finish = b"".join(vocab[t] for t in got)
            ends = finish.endswith(b"\xff\xd0")
            if ends:  # the model's marker follows, where it is the one due
                assert data[end:end + 2] == b"\xff\xd0"
                finish, kept = finish[:-2], kept + 1
            else:
                assert data[end:end + 2] != b"\xff\xd0"
            merged += len(got) < len(finish) + ends  # (single bytes, then the marker token)
            assert len(finish) <= end - pos + 1
            stream = data[:pos] + finish + data[end:]
            codec.check(stream, tiny)
            checked += 1
            if pos in starts:
                i = starts.index(pos)
                mcu = np.asarray(codec.decode(stream, tiny).convert("L"))
                y, x = divmod(i, tiny.width // 16)
                assert np.abs(mcu[16 * y + 4:16 * y + 12, 16 * x + 4:16 * x + 12].astype(int)
                              - 128).max() <= 2
                flat += 1
    assert checked >= 60 and flat >= 10 and none_outside >= 1 and kept >= 1
    assert (merged >= 1) is merges
