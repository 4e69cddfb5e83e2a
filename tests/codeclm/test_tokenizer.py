"""codeclm.tokenizer: exact round trip, unit-boundary splits, files, vocabulary size, errors.

Tokenizers here are trained on real canonical encodings (the jpeglm / avclm codecs through
``codeclm.modality``) of small synthetic images and clips, so merges are the ones a real run
learns; the property tests then throw arbitrary bytes at them.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codeclm.errors import TokenizerError
from codeclm.modality import modality_for
from codeclm.profile import get_profile
from codeclm.tokenizer import MIN_VOCAB, ByteTokenizer, bytes_to_text

MODALITIES = ("jpeg", "h264")
RST = re.compile(rb"\xff[\xd0-\xd7]")
START_CODE = re.compile(rb"(?=\x00\x00\x01)")

# --- real canonical encodings -------------------------------------------------------


def _write_images(directory, n, size, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = size
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.zeros((h, w, 3), np.uint8)
        img[:] = rng.integers(0, 256, 3, dtype=np.uint8)
        for _ in range(3):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(4, max(5, h // 3))
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3, dtype=np.uint8)
        img = np.clip(img.astype(int) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
        p = directory / f"img{i}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


def _write_clips(directory, n, size, fps, frames, seed):
    import av

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = size
        p = directory / f"clip{i}.mp4"
        with av.open(str(p), "w") as out:
            s = out.add_stream("libx264", rate=fps)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            bg = rng.integers(0, 256, 3, dtype=np.uint8)
            col = rng.integers(0, 256, 3, dtype=np.uint8)
            x, y = rng.integers(0, w), rng.integers(0, h)
            vx, vy = rng.integers(-4, 5), rng.integers(-4, 5)
            yy, xx = np.mgrid[0:h, 0:w]
            for t in range(frames):
                img = np.empty((h, w, 3), np.uint8)
                img[:] = bg
                cx, cy = (x + vx * t) % w, (y + vy * t) % h
                img[(yy - cy) ** 2 + (xx - cx) ** 2 < 64] = col
                for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(pkt)
            for pkt in s.encode():
                out.mux(pkt)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """modality -> list of canonical modeled byte strings (tiny profiles)."""
    root = tmp_path_factory.mktemp("tokcorpus")
    out = {}
    jm = modality_for(get_profile("jpeg", "tiny"))
    out["jpeg"] = [jm.encode_path(str(p)) for p in _write_images(root, 12, (64, 64), 0)]
    ap = get_profile("h264", "tiny")
    am = modality_for(ap)
    h, w = getattr(ap, "height", 64), getattr(ap, "width", 64)
    out["h264"] = [am.encode_path(str(p)) for p in _write_clips(root, 4, (h, w), 6, 12, 1)]
    return out


@pytest.fixture(scope="module")
def tokenizers(corpus):
    return {m: ByteTokenizer.train(corpus[m], 450, m) for m in MODALITIES}


# --- helpers ---------------------------------------------------------------------


def boundaries(tok: ByteTokenizer, data: bytes) -> set[int]:
    """Byte offsets where a token starts or ends (0 and len(data) included)."""
    ids = tok.encode(data, bos=False, eos=False)
    offs, pos = {0}, 0
    for i in ids:
        pos += len(tok.token_bytes[i])
        offs.add(pos)
    assert pos == len(data)
    return offs


def assert_unit_boundaries(tok: ByteTokenizer, data: bytes) -> None:
    b = boundaries(tok, data)
    if tok.modality == "jpeg":
        # a restart marker closes a unit: a token boundary right after each one
        for m in RST.finditer(data):
            assert m.end() in b, f"no boundary after RST at {m.start()}"
    else:
        # a start code opens a unit: a boundary right before each one (a 4-byte start code
        # 00 00 00 01 begins one byte earlier than the 00 00 01 it contains)
        for m in START_CODE.finditer(data):
            i = m.start()
            assert i in b or (i > 0 and data[i - 1] == 0 and i - 1 in b), \
                f"no boundary before start code at {i}"


# byte strings rich in the markers and in the bytes the corpora merge on
MARKERY = st.lists(
    st.one_of(
        st.binary(min_size=0, max_size=12),
        st.sampled_from([b"\xff", b"\xff\x00", b"\x00", b"\x00\x00", b"\x00\x00\x01",
                         b"\x00\x00\x00\x01", b"\x01", b"\xff\xd9"]),
        st.integers(0xD0, 0xD7).map(lambda n: bytes([0xFF, n])),
    ),
    max_size=40,
).map(b"".join)
ANY_BYTES = st.one_of(st.binary(max_size=400), MARKERY)


# --- round trip ------------------------------------------------------------------


@pytest.mark.parametrize("modality", MODALITIES)
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=ANY_BYTES)
def test_round_trip_every_byte_string(tokenizers, modality, data):
    tok = tokenizers[modality]
    ids = tok.encode(data)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.special_ids.isdisjoint(ids[1:-1])
    assert tok.decode(ids) == data
    assert tok.encode(data, bos=False, eos=False) == ids[1:-1]


@pytest.mark.parametrize("modality", MODALITIES)
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=MARKERY)
def test_merges_never_cross_units_on_any_bytes(tokenizers, modality, data):
    assert_unit_boundaries(tokenizers[modality], data)


@pytest.mark.parametrize("modality", MODALITIES)
def test_real_encodings_round_trip_and_split_at_units(corpus, tokenizers, modality):
    tok = tokenizers[modality]
    assert MIN_VOCAB < tok.vocab_size <= 450
    for data in corpus[modality]:
        assert tok.decode(tok.encode(data)) == data
        assert_unit_boundaries(tok, data)
        # BPE actually compresses real codec bytes
        assert len(tok.encode(data)) < len(data)
    # the markers are really there (the check above is not vacuous)
    data = corpus[modality][0]
    if modality == "jpeg":
        p = get_profile("jpeg", "tiny")
        assert len(RST.findall(data)) == p.mcu_count - 1
    else:
        assert len(START_CODE.findall(data)) > 10


def test_merged_tokens_contain_markers_only_at_their_edge(tokenizers):
    """No learned token has a unit marker strictly inside it (the vocabulary-level view)."""
    jt, at = tokenizers["jpeg"], tokenizers["h264"]
    for tb in jt.token_bytes:
        if tb:
            for m in RST.finditer(tb):
                assert m.end() == len(tb), tb.hex()
    for tb in at.token_bytes:
        if tb:
            for m in START_CODE.finditer(tb):
                assert m.start() == 0 or (m.start() == 1 and tb[0] == 0), tb.hex()


# --- files -----------------------------------------------------------------------


@pytest.mark.parametrize("modality", MODALITIES)
def test_save_load_and_hf_fast_tokenizer_agree(tmp_path, corpus, tokenizers, modality):
    from transformers import PreTrainedTokenizerFast

    tok = tokenizers[modality]
    path = tok.save(tmp_path / "tok.json")
    assert path == tmp_path / "tok.json"
    loaded = ByteTokenizer.load(path)
    assert loaded.modality == modality
    assert loaded.vocab_size == tok.vocab_size
    assert loaded.token_bytes == tok.token_bytes
    assert (loaded.bos_id, loaded.eos_id, loaded.pad_id) == (1, 2, 0)
    hf = PreTrainedTokenizerFast(tokenizer_file=str(path))
    assert len(hf) == tok.vocab_size
    samples = corpus[modality][:3] + [b"", b"\x00\x00\x01\xff\xd0\xff", bytes(range(256))]
    for data in samples:
        ids = tok.encode(data, bos=False, eos=False)
        assert loaded.encode(data, bos=False, eos=False) == ids
        assert hf(bytes_to_text(data), add_special_tokens=False)["input_ids"] == ids
        assert tok.to_hf()(bytes_to_text(data), add_special_tokens=False)["input_ids"] == ids
    # a directory works too
    tok.save(tmp_path / "d")
    assert ByteTokenizer.load(tmp_path / "d").token_bytes == tok.token_bytes


def test_fingerprint_is_the_tokenizers_identity(tmp_path, corpus, tokenizers):
    """Same ids -> same fingerprint, whatever the file looks like (pretty-printed, exported
    with a post-processor); other merges, vocabulary size or modality -> another one."""
    from tokenizers import Tokenizer

    tok = tokenizers["jpeg"]
    fp = tok.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", fp)
    assert ByteTokenizer.load(tok.save(tmp_path / "tok.json")).fingerprint() == fp
    tok.to_hf().save_pretrained(tmp_path / "exported")  # what a model directory holds
    exported = tmp_path / "exported" / "tokenizer.json"
    assert exported.read_bytes() != (tmp_path / "tok.json").read_bytes()
    assert ByteTokenizer.load(exported).fingerprint() == fp
    compact = ByteTokenizer(Tokenizer.from_str(tok.backend.to_str(pretty=False)), "jpeg")
    assert compact.fingerprint() == fp
    smaller = ByteTokenizer.train(corpus["jpeg"], 400, "jpeg")
    other_corpus = ByteTokenizer.train(corpus["jpeg"][:3], 450, "jpeg")
    fps = {fp, smaller.fingerprint(), other_corpus.fingerprint(),
           tokenizers["h264"].fingerprint()}
    assert len(fps) == 4


# --- vocabulary size ---------------------------------------------------------------


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("extra", [0, 1, 64])
def test_vocab_size_respected(corpus, modality, extra):
    tok = ByteTokenizer.train(corpus[modality], MIN_VOCAB + extra, modality)
    assert tok.vocab_size == MIN_VOCAB + extra
    assert len(tok.token_bytes) == tok.vocab_size
    assert sum(b is not None and len(b) > 1 for b in tok.token_bytes) == extra


def test_vocab_size_below_minimum_is_an_error(corpus):
    with pytest.raises(TokenizerError, match="minimum"):
        ByteTokenizer.train(corpus["jpeg"], MIN_VOCAB - 1, "jpeg")


def test_unknown_modality_is_an_error():
    with pytest.raises(TokenizerError, match="modality"):
        ByteTokenizer.train([b"abc"], 300, "png")


# --- bad files -----------------------------------------------------------------------


def test_bad_tokenizer_files(tmp_path, tokenizers):
    with pytest.raises(TokenizerError, match="no tokenizer"):
        ByteTokenizer.load(tmp_path / "missing.json")
    with pytest.raises(TokenizerError, match="no tokenizer"):
        ByteTokenizer.load(tmp_path)  # a directory without tokenizer.json

    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\x89PNG not json at all")
    with pytest.raises(TokenizerError):
        ByteTokenizer.load(garbage)

    other_json = tmp_path / "other.json"
    other_json.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(TokenizerError):
        ByteTokenizer.load(other_json)

    good = tokenizers["jpeg"].save(tmp_path / "good.json").read_text()
    truncated = tmp_path / "truncated.json"
    truncated.write_text(good[: len(good) // 2])
    with pytest.raises(TokenizerError):
        ByteTokenizer.load(truncated)

    # a well-formed tokenizers file that codeclm did not make (no unit split)
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    foreign = Tokenizer(models.BPE())
    foreign.pre_tokenizer = pre_tokenizers.Whitespace()
    foreign.train_from_iterator(["hello world"] * 10, trainers.BpeTrainer(vocab_size=50))
    foreign.save(str(tmp_path / "foreign.json"))
    with pytest.raises(TokenizerError):
        ByteTokenizer.load(tmp_path / "foreign.json")

    # a codeclm tokenizer with a special token removed
    spec = json.loads(good)
    del spec["model"]["vocab"]["</s>"]
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "</s>"]
    broken = tmp_path / "nospecial.json"
    broken.write_text(json.dumps(spec))
    with pytest.raises(TokenizerError):
        ByteTokenizer.load(broken)


def test_decode_out_of_range_id_is_an_error(tokenizers):
    tok = tokenizers["jpeg"]
    with pytest.raises(TokenizerError, match="out of range"):
        tok.decode([tok.vocab_size + 5])


@pytest.mark.parametrize("modality", MODALITIES)
def test_boundary_check_catches_a_tokenizer_without_unit_splits(corpus, modality):
    """The boundary assertions above are not vacuous: BPE without the unit split, trained
    on the same bytes, does merge across units."""
    from tokenizers import Tokenizer, models, trainers

    from codeclm.tokenizer import SPECIAL_TOKENS

    backend = Tokenizer(models.BPE())
    backend.train_from_iterator(
        [bytes_to_text(d) for d in corpus[modality]],
        trainers.BpeTrainer(vocab_size=450, special_tokens=list(SPECIAL_TOKENS),
                            initial_alphabet=list(bytes_to_text(bytes(range(256)))),
                            min_frequency=2))
    naive = ByteTokenizer(backend, modality)
    failures = 0
    for data in corpus[modality]:
        assert naive.decode(naive.encode(data)) == data
        try:
            assert_unit_boundaries(naive, data)
        except AssertionError:
            failures += 1
    assert failures > 0


# --- the fast rank-ordered encoder (codeclm.fast_bpe) ------------------------------------


def _hf_ids(tok: ByteTokenizer, data: bytes) -> list[int]:
    return tok.backend.encode(bytes_to_text(data), add_special_tokens=False).ids


@pytest.mark.parametrize("modality", MODALITIES)
@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=ANY_BYTES)
def test_fast_encoder_gives_hugging_face_ids_on_any_bytes(tokenizers, modality, data):
    tok = tokenizers[modality]
    assert tok.fast is not None  # trained merges are in rank order: the fast path is on
    assert tok.fast.encode(data) == _hf_ids(tok, data)


@pytest.mark.parametrize("modality", MODALITIES)
def test_fast_encoder_gives_hugging_face_ids_on_real_encodings(corpus, tokenizers, modality):
    tok = tokenizers[modality]
    for data in corpus[modality]:
        ids = tok.encode(data, bos=False, eos=False)
        assert ids == _hf_ids(tok, data)
        assert len(ids) < len(data)  # merges did apply


def test_fast_encoder_matches_on_the_bundled_tokenizers_and_assets():
    """The shipped tokenizers over the shipped sample media (paper profiles: longer streams)."""
    from pathlib import Path

    import avclm
    import jpeglm

    for pkg, modality, pattern in ((jpeglm, "jpeg", "*.jpg"), (avclm, "h264", "*.mp4")):
        root = Path(pkg.__file__).parent / "assets"
        tok = ByteTokenizer.load(root / "model" / "tokenizer.json")
        assert tok.fast is not None
        m = modality_for(get_profile(modality, "paper"))
        files = sorted(root.glob(pattern))
        assert files
        for f in files:
            data = m.encode_path(str(f))
            assert tok.fast.encode(data) == _hf_ids(tok, data)


def _handmade_tokenizer(merges: list[tuple[str, str]]) -> ByteTokenizer:
    """Specials + 256 bytes + the given merges over ASCII letters, jpeg unit split."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    from codeclm.tokenizer import SPECIAL_TOKENS, unit_split

    c = bytes_to_text
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for b in range(256):
        vocab[c(bytes([b]))] = len(vocab)
    pairs = [(c(a.encode()), c(b.encode())) for a, b in merges]
    for a, b in pairs:
        vocab.setdefault(a + b, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=pairs))
    pattern, behavior = unit_split("jpeg")
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior=behavior)
    return ByteTokenizer(backend, "jpeg")


def test_merges_out_of_rank_order_fall_back_to_hugging_face():
    """A merge that re-produces a token after a lower-ranked merge used it ("a"+"bc" -> abc
    at rank 4, "abc"+"d" at rank 3) makes rank order inexact: the fast path must stay off."""
    from codeclm.fast_bpe import FastBPE

    merges = [("b", "c"), ("a", "b"), ("ab", "c"), ("abc", "d"), ("a", "bc")]
    tok = _handmade_tokenizer(merges)
    assert tok.fast is None
    hf = _hf_ids(tok, b"abcd")
    assert tok.encode(b"abcd", bos=False, eos=False) == hf
    assert [tok.token_bytes[i] for i in hf] == [b"abcd"]
    # the check matters: forced on, rank order stops at abc + d
    v = json.loads(tok.backend.to_str())["model"]["vocab"]
    ids = [(v[bytes_to_text(a.encode())], v[bytes_to_text(b.encode())],
            v[bytes_to_text((a + b).encode())]) for a, b in merges]
    forced = FastBPE(tok.byte_ids, ids, "jpeg")
    assert [tok.token_bytes[i] for i in forced.encode(b"abcd")] == [b"abc", b"d"]
    # the same merges in training order are exact
    assert _handmade_tokenizer(merges[:4]).fast is not None


def test_fast_encoder_long_words_and_cache_reuse():
    """Words longer than the 7-byte integer key take the one-by-one path; a second call
    (cache warm) and a fresh encoder give the same ids as Hugging Face."""
    from codeclm.fast_bpe import FastBPE

    tok = _handmade_tokenizer([("a", "a"), ("aa", "aa"), ("aaaa", "aaaa"), ("b", "a"),
                               ("ba", "aa"), ("x", "y")])
    assert tok.fast is not None
    samples = [b"a" * n + b"b" + b"a" * m + b"xy" * k
               for n in range(0, 20, 3) for m in (0, 1, 6, 7, 8, 15) for k in (0, 1, 5)]
    samples += [b"\xff\xd0".join(samples[i:i + 4]) for i in range(0, len(samples), 4)]
    for data in samples + samples:  # the second pass hits the cache
        assert tok.fast.encode(data) == _hf_ids(tok, data), data
    fresh = FastBPE.from_backend(tok.backend, tok.byte_ids, "jpeg")
    for data in reversed(samples):
        assert fresh.encode(data) == _hf_ids(tok, data), data


def test_token_prefixes_are_the_vocabulary_tokens_that_begin_a_token_longest_first():
    from codeclm.token_bytes import TokenPrefixes

    vocab = [None, b"\x00", b"\x00\x00", b"\x00\x00\x01", b"\x00\x00\x01\x65\x88", b"\x65",
             b"\x00\x01"]
    prefixes = TokenPrefixes(vocab)
    assert prefixes(4) == [3, 2, 1]  # 00 00 01 65 (absent) skipped
    assert prefixes(3) == [2, 1] and prefixes(1) == [] and prefixes(0) == []
    assert prefixes(6) == [1] and prefixes(4) is prefixes(4)  # memoized
