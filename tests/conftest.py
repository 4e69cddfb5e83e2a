"""Fixtures shared by every test package, and the order the test files run in."""

import pytest

#: the longest test files (minutes each, see `pytest --durations`), run first: with
#: `make test`'s two pytest-xdist workers (whole files per worker) they start at once on
#: both cores instead of ending the run on one
LONGEST_FIRST = ("test_readme.py", "test_cli_bad_inputs.py", "test_class_guidance.py",
                 "test_slice_automaton.py", "test_training_resume.py")


def pytest_collection_modifyitems(config, items):
    """Move the files of :data:`LONGEST_FIRST` to the front, in that order (a stable sort:
    the tests inside a file keep their order, which the README test relies on)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def _random_model_dir(samples, vocab_size, modality, profile, context, out):
    """Train a ByteTokenizer on ``samples`` (modeled bytes) and save an untrained tiny Llama
    (hidden 32, MLP 64, seed 0) with it and ``profile`` as a model directory at ``out``."""
    import torch
    from transformers import LlamaForCausalLM

    from codeclm.model_dir import save_model_dir
    from codeclm.models import llama_config
    from codeclm.tokenizer import ByteTokenizer

    tok = ByteTokenizer.train(samples, vocab_size, modality)
    torch.manual_seed(0)
    cfg = llama_config("tiny", tok.vocab_size, context, hidden_size=32, intermediate_size=64)
    return save_model_dir(LlamaForCausalLM(cfg), tok, profile, out)


@pytest.fixture(scope="session")
def random_model_dir():
    """``random_model_dir(samples, vocab_size, modality, profile, context, out) -> Path``."""
    return _random_model_dir


def _spm_model_dir(samples, out, vocab_size=600, context=8192, shard=True):
    """A model directory in the published JPEG-LM checkpoint's format, built offline: a
    SentencePiece BPE model trained on ``samples`` (modeled bytes, braille-mapped; byte
    fallback on, every byte's character required) as ``tokenizer.model``, the tokenizer
    config files ``LlamaTokenizer`` saves (read back with it), and an untrained tiny
    ``LlamaForCausalLM`` (seed 0) in sharded safetensors. No ``profile.json``."""
    import io
    import json
    from pathlib import Path

    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    from codeclm.tokenizer import bytes_to_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([bytes_to_text(s) for s in samples]), model_writer=buf,
        model_type="bpe", vocab_size=vocab_size, character_coverage=1.0,
        required_chars="".join(chr(0x2800 + b) for b in range(256)), byte_fallback=True,
        max_sentence_length=1 << 20, minloglevel=2, num_threads=1)
    (out / "tokenizer.model").write_bytes(buf.getvalue())
    # the files a transformers 4.x (slow) LlamaTokenizer.save_pretrained writes, as the
    # published directory has them (transformers 5 writes tokenizer.json instead)
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps({
        **special, "tokenizer_class": "LlamaTokenizer", "add_bos_token": True,
        "add_eos_token": False, "legacy": True, "pad_token": None, "sp_model_kwargs": {},
        "clean_up_tokenization_spaces": False, "model_max_length": 1000000000000000019884624838656,
    }, indent=2))
    assert len(LlamaTokenizer.from_pretrained(out)) == vocab_size
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=context, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(out, max_shard_size="60KB" if shard else "10GB")
    return out


@pytest.fixture(scope="session")
def spm_model_dir():
    """``spm_model_dir(samples, out, vocab_size=600, context=8192, shard=True) -> Path``."""
    return _spm_model_dir


@pytest.fixture(scope="session")
def spm_checkpoint(tmp_path_factory, spm_model_dir):
    """One directory in the published JPEG-LM checkpoint's format (see ``_spm_model_dir``),
    its tokenizer trained on the bundled photos at the ``tiny`` profile. Read-only: copy
    it before changing anything."""
    from jpeglm import codec
    from jpeglm.assets import sample_paths
    from jpeglm.profile import PROFILES

    samples = [codec.encode_image(p, PROFILES["tiny"]) for p in sample_paths()]
    return spm_model_dir(samples, tmp_path_factory.mktemp("spm") / "jpeg-lm")


@pytest.fixture
def one_thread():
    """torch on one thread for the test (restored after): a tiny model on a shared 2-core
    machine runs ~20x faster so, and the native decode kernels run only on one thread."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
