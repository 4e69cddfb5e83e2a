"""SentencePiece vocabularies (the published JPEG-LM checkpoint's format) and the reverse
direction: our exported directories read by plain transformers.

The SentencePiece directory is built offline (``spm_checkpoint`` in tests/conftest.py):
a BPE model trained with the ``sentencepiece`` package on braille-mapped canonical JPEG
bytes, saved with ``LlamaTokenizer``, beside a small random ``LlamaForCausalLM``.
"""

from __future__ import annotations

import io

import pytest
import sentencepiece as spm
from hypothesis import given, settings
from hypothesis import strategies as st

from codeclm.errors import TokenizerError
from codeclm.spm_tokenizer import DUMMY_PREFIX, SpmTokenizer, piece_bytes
from codeclm.tokenizer import bytes_to_text


@pytest.fixture(scope="module")
def tok(spm_checkpoint):
    return SpmTokenizer.load(spm_checkpoint)


@pytest.fixture(scope="module")
def sp(spm_checkpoint):
    return spm.SentencePieceProcessor(model_file=str(spm_checkpoint / "tokenizer.model"))


def test_piece_bytes_from_the_piece_text():
    assert piece_bytes("\u28ff\u28d8") == b"\xff\xd8"
    assert piece_bytes(DUMMY_PREFIX + "\u28ff") == b"\xff"
    assert piece_bytes(DUMMY_PREFIX) == b""
    assert piece_bytes("a\u2800") is None
    assert piece_bytes("\u2800" + DUMMY_PREFIX) is None  # the prefix only counts at the start


def test_every_piece_kind_gets_its_bytes(tok, sp):
    assert tok.vocab_size == sp.get_piece_size() == 600
    kinds = {"byte": 0, "control": 0, "unknown": 0, "prefix": 0, "plain": 0}
    for i in range(tok.vocab_size):
        piece, data = sp.id_to_piece(i), tok.token_bytes[i]
        if sp.is_byte(i):  # <0xNN>: a UTF-8 fragment of a character, not a data byte
            assert piece.startswith("<0x") and data is None and i in tok.special_ids
            kinds["byte"] += 1
        elif sp.is_control(i) or sp.is_unknown(i):
            assert data is None and i in tok.special_ids
            kinds["control" if sp.is_control(i) else "unknown"] += 1
        elif piece.startswith(DUMMY_PREFIX):  # bytes after the mark, never sampled
            assert data == bytes(ord(c) - 0x2800 for c in piece[1:])
            assert i in tok.special_ids and i in tok.prefix_ids
            kinds["prefix"] += 1
        else:
            assert data == bytes(ord(c) - 0x2800 for c in piece) and data
            assert i not in tok.special_ids
            kinds["plain"] += 1
    assert kinds["byte"] == 256 and kinds["control"] == 2 and kinds["unknown"] == 1
    assert kinds["prefix"] >= 1 and kinds["plain"] > 256
    assert [tok.token_bytes[i] for i in tok.byte_ids] == [bytes([b]) for b in range(256)]
    assert (tok.bos_id, tok.eos_id) == (sp.bos_id(), sp.eos_id())
    assert tok.eos_id in tok.special_ids


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.booleans(), st.booleans())
def test_bytes_round_trip(tok, data, bos, eos):
    ids = tok.encode(data, bos=bos, eos=eos)
    assert tok.decode(ids) == data
    assert (ids[:1] == [tok.bos_id]) == bos and (ids[-1:] == [tok.eos_id]) == eos
    body = ids[int(bos):len(ids) - int(eos)]
    assert all(tok.token_bytes[i] is not None for i in body)
    if not bos:  # a continuation carries no dummy prefix
        assert not set(body) & tok.prefix_ids


def test_stream_start_ids_equal_the_reference_tokenizer(tok, spm_checkpoint, encoded_streams):
    """``AutoTokenizer(use_fast=False, add_eos_token=True)`` as the authors' script loads it."""
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(spm_checkpoint, use_fast=False, add_eos_token=True)
    for data in encoded_streams:
        ids = tok.encode(data)
        assert ref(bytes_to_text(data))["input_ids"] == ids
        assert ids[1] in tok.prefix_ids  # SentencePiece's dummy prefix opens the stream
        assert ref.decode(ids, skip_special_tokens=True).strip() == bytes_to_text(data)


@pytest.fixture(scope="module")
def encoded_streams():
    from jpeglm import codec
    from jpeglm.assets import sample_paths
    from jpeglm.profile import PROFILES

    return [codec.encode_image(p, PROFILES[name])
            for p, name in zip(sample_paths()[:4], ["tiny", "paper", "tiny", "paper"])]


def _train(text: str, byte_fallback: bool) -> bytes:
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter([text] * 4), model_writer=buf,
                                   model_type="bpe", vocab_size=300 if byte_fallback else 40,
                                   character_coverage=1.0,
                                   byte_fallback=byte_fallback, hard_vocab_limit=False,
                                   minloglevel=2, num_threads=1)
    return buf.getvalue()


@pytest.mark.parametrize("byte_fallback", [False, True])
def test_a_vocabulary_missing_byte_characters_is_refused(byte_fallback):
    proto = _train(bytes_to_text(bytes(range(16)) * 8), byte_fallback)
    with pytest.raises(TokenizerError, match=r"240 byte values have no piece of their own "
                                             r"\(10 11 12 13 14 15 16 17 \.\.\.\)"):
        SpmTokenizer(proto)


def test_not_a_sentencepiece_file(tmp_path):
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(b"not a protobuf \xff\xfe")
    with pytest.raises(TokenizerError, match="not a SentencePiece model") as e:
        SpmTokenizer.load(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(TokenizerError, match="no SentencePiece tokenizer.model"):
        SpmTokenizer.load(tmp_path / "absent")


# ---------------------------------------------------------------- the reverse direction
def test_exported_models_load_with_plain_transformers(tmp_path, random_model_dir):
    """A user's transformers (or vLLM) script: AutoTokenizer + AutoModelForCausalLM on an
    exported directory give our ids (``<s>`` first, as Llama tokenizers do) and our logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codeclm.model_dir import load_model_dir
    from jpeglm import codec
    from jpeglm.assets import sample_paths
    from jpeglm.profile import PROFILES

    tiny = PROFILES["tiny"]
    streams = [codec.encode_image(p, tiny) for p in sample_paths()]
    out = random_model_dir(streams, 320, "jpeg", tiny, 1024, tmp_path / "m")
    ours = load_model_dir(out, "jpeg")
    hf_tok = AutoTokenizer.from_pretrained(out)
    hf_model = AutoModelForCausalLM.from_pretrained(out)
    for data in streams[:3]:
        text = bytes_to_text(data)
        assert hf_tok(text)["input_ids"] == ours.tokenizer.encode(data, eos=False)
        assert (hf_tok(text, add_special_tokens=False)["input_ids"]
                == ours.tokenizer.encode(data, bos=False, eos=False))
    ids = torch.tensor([hf_tok(bytes_to_text(streams[0]))["input_ids"][:64]])
    with torch.no_grad():
        torch.testing.assert_close(hf_model(ids).logits, ours.model(ids).logits)
    new = hf_model.generate(ids, max_new_tokens=8, do_sample=False)[0, 64:].tolist()
    assert len(new) == 8 and hf_tok.decode(new, skip_special_tokens=True) != ""
