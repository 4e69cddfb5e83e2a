"""Fixtures shared by every test package."""

import pytest


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
