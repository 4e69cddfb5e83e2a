"""Class tokens and classifier-free guidance on tiny random Llama models (hidden 32).

The guided forward must be invisible to the Session: S=1 is conditional sampling and
S=0 null-class sampling token for token; other scales give ``u + S (c - u)``; rollback
(rejected units), identical-prompt cache copies and grammar masks work on both rows.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from codeclm.errors import ConfigError, ModelError
from codeclm.generation.forward import KVCacheLM
from codeclm.generation.sampling_config import SamplingConfig
from codeclm.generation.session import ACCEPT, Reject, generate
from codeclm.guidance import GuidedLM, conditioned_forward
from codeclm.labels import (
    LabelError,
    add_class_tokens,
    class_id,
    class_ids,
    class_names,
    null_id,
    with_class,
)
from codeclm.models import llama_config
from codeclm.tokenizer import ByteTokenizer

CLASSES = ["circle", "square", "triangle"]


def _nal_stream(rng, n=12) -> bytes:
    return b"".join(b"\x00\x00\x01" + rng.integers(1, 256, int(rng.integers(4, 16)),
                                                   dtype=np.uint8).tobytes() for _ in range(n))


@pytest.fixture(scope="module")
def base_tok():
    rng = np.random.default_rng(0)
    return ByteTokenizer.train([_nal_stream(rng) for _ in range(30)], 320, "h264")


@pytest.fixture(scope="module")
def tok(base_tok):
    return add_class_tokens(base_tok, CLASSES)


@pytest.fixture(scope="module")
def model(tok):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    cfg = llama_config("tiny", tok.vocab_size, 256, hidden_size=32, intermediate_size=64,
                       num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def data():
    return _nal_stream(np.random.default_rng(5), 6)


def _prompts(tok, data, name, lengths=(40, 9, 25)):
    cid = class_ids(tok)[name]
    return [with_class(tok.encode(data[:n], eos=False), cid) for n in lengths]


def _guided(model, tok, batch, scale):
    return GuidedLM(model, batch, scale, class_ids(tok).values(), null_id(tok))


def test_class_tokens_are_special_and_spell_no_bytes(base_tok, tok, data):
    ids = class_ids(tok)
    assert sorted(ids) == sorted(CLASSES + ["null"])
    assert class_names(tok) == CLASSES
    assert min(ids.values()) == base_tok.vocab_size  # appended after the merges
    assert tok.vocab_size == base_tok.vocab_size + 4
    for i in ids.values():
        assert tok.token_bytes[i] is None and i in tok.special_ids
    assert tok.encode(data) == base_tok.encode(data)  # bytes never become class tokens
    assert tok.decode([tok.bos_id, ids["circle"], *tok.encode(data, bos=False)]) == data
    # saved and loaded (the HF file form of export too): the same vocabulary
    from tokenizers import Tokenizer

    assert class_ids(ByteTokenizer(Tokenizer.from_str(tok.backend.to_str()), "h264")) == ids
    assert add_class_tokens(tok, ["circle"]).vocab_size == tok.vocab_size  # ids kept


def test_scale_one_is_conditional_sampling_token_for_token(tok, model, data):
    cfg = SamplingConfig(1.0, 50, 0.9, seed=3)
    prompts = _prompts(tok, data, "square")
    plain = generate(model, tok, prompts, cfg, max_new_tokens=40, min_new_tokens=40)
    guided = generate(_guided(model, tok, 3, 1.0), tok, prompts, cfg, max_new_tokens=40,
                      min_new_tokens=40)
    assert guided.tokens == plain.tokens


def test_scale_zero_is_null_class_sampling_token_for_token(tok, model, data):
    cfg = SamplingConfig(1.0, 50, 0.9, seed=4)
    guided = generate(_guided(model, tok, 3, 0.0), tok, _prompts(tok, data, "square"), cfg,
                      max_new_tokens=40, min_new_tokens=40)
    null = generate(model, tok, _prompts(tok, data, "null"), cfg, max_new_tokens=40,
                    min_new_tokens=40)
    assert guided.tokens == null.tokens


def test_guided_logits_are_u_plus_s_times_c_minus_u(tok, model, data):
    prompt = _prompts(tok, data, "triangle", (30,))[0]
    null = _prompts(tok, data, "null", (30,))[0]
    g = _guided(model, tok, 1, 2.5)
    got = [g.prefill(0, torch.tensor(prompt))]
    kv = KVCacheLM(model, 2)
    c, u = kv.prefill(0, torch.tensor(prompt)), kv.prefill(1, torch.tensor(null))
    want = [u + 2.5 * (c - u)]
    got.append(g.decode(torch.tensor([7]), [len(prompt)])[0])
    both = kv.decode(torch.tensor([7, 7]), [len(prompt)] * 2)
    want.append(both[1] + 2.5 * (both[0] - both[1]))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_rollback_moves_both_rows(tok, model, data):
    """Greedy guided decoding with every unit rejected once equals plain greedy guided
    decoding: after each rollback both cache rows are as before the unit (the guided
    logits depend on both)."""
    greedy = SamplingConfig(temperature=0)
    prompts = _prompts(tok, data, "circle")
    plain = generate(_guided(model, tok, 3, 3.0), tok, prompts, greedy, max_new_tokens=60)
    tries: dict = {}

    def reject_once(r, u):
        tries[(r, u.index)] = tries.get((r, u.index), 0) + 1
        return Reject() if tries[(r, u.index)] == 1 else ACCEPT

    again = generate(_guided(model, tok, 3, 3.0), tok, prompts, greedy, max_new_tokens=60,
                     on_unit=reject_once)
    assert again.stats["rejected"] > 0
    assert again.tokens == plain.tokens and again.units == plain.units


def test_identical_prompts_copy_both_rows(tok, model, data):
    """A batch of one repeated prompt (the Session copies the cache row) gives, row by row,
    what batch-1 runs with seed + row give."""
    cfg = SamplingConfig(1.0, 50, 0.9, seed=10)
    prompt = _prompts(tok, data, "square", (20,))[0]
    batch = generate(_guided(model, tok, 3, 2.0), tok, [prompt] * 3, cfg, max_new_tokens=30,
                     min_new_tokens=30)
    for r in range(3):
        one = generate(_guided(model, tok, 1, 2.0), tok, [prompt],
                       SamplingConfig(1.0, 50, 0.9, seed=10 + r), max_new_tokens=30,
                       min_new_tokens=30)
        assert batch.tokens[r] == one.tokens[0]


def test_class_lookup_errors(tok, base_tok, model):
    with pytest.raises(LabelError, match=r"unknown class 'dog'; known classes: circle, "
                                         r"square, triangle"):
        class_id(tok, "dog")
    with pytest.raises(LabelError, match="unknown class 'null'"):
        class_id(tok, "null")
    with pytest.raises(ModelError, match="trained without class labels"):
        class_id(base_tok, "circle")
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="--cfg-scale must be a finite number >= 0"):
            conditioned_forward(model, tok, 1, "circle", bad)
    with pytest.raises(ConfigError, match="--cfg-scale needs --class"):
        conditioned_forward(model, tok, 1, None, 2.0)
    with pytest.raises(LabelError, match="reserved for the null class"):
        add_class_tokens(base_tok, ["null"])


# ---------------------------------------------------------------- JPEG, grammar on
@pytest.fixture(scope="module")
def jpeg_model_dir(tmp_path_factory):
    from transformers import LlamaForCausalLM

    from codeclm.model_dir import save_model_dir
    from jpeglm import codec
    from jpeglm.profile import PROFILES

    tiny = PROFILES["tiny"]
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(6):
        im = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        samples.append(codec.encode_image(im, tiny))
    tok = add_class_tokens(ByteTokenizer.train(samples, 320, "jpeg"), CLASSES)
    torch.manual_seed(0)
    cfg = llama_config("tiny", tok.vocab_size, 2048, hidden_size=32, intermediate_size=64)
    return save_model_dir(LlamaForCausalLM(cfg), tok, tiny,
                          tmp_path_factory.mktemp("cfg") / "model")


def test_guided_jpeg_samples_decode_strictly(jpeg_model_dir):
    """With the scan grammar masking the guided logits, every image of a random model is
    a complete JPEG that Pillow decodes strictly; labels.json is in the model directory."""
    import json

    from jpeglm import codec
    from jpeglm.generate import ImageEvent, generate_images
    from jpeglm.profile import PROFILES

    assert json.loads((jpeg_model_dir / "labels.json").read_text())["classes"] == CLASSES
    events = [e for e in generate_images(str(jpeg_model_dir), 2, batch=2, class_name="circle",
                                         cfg_scale=3.0, config=SamplingConfig(seed=1))
              if isinstance(e, ImageEvent)]
    assert len(events) == 2 and all(e.valid for e in events)
    for e in events:
        im = Image.open(io.BytesIO(codec.to_jpeg(e.data, PROFILES["tiny"])))
        im.load()  # Pillow raises on a truncated or corrupt scan
        assert im.size == (64, 64)
