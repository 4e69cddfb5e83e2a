"""The opt-in ``torch.compile`` of the decode step (:mod:`codeclm.generation.compiled`):
greedy decoding through the compiled step equals the no-cache Hugging Face reference, and
a compile that fails (no C++ compiler) falls back to eager with a warning. Tiny random
Llama models (hidden 32, 2 layers); the compile costs a few seconds (less with
inductor's on-disk cache warm)."""

from __future__ import annotations

import shutil

import pytest
import torch

from codeclm.generation import compiled
from codeclm.generation.session import generate

from .test_sampler import GREEDY, _model, prompts, reference_greedy, tok  # noqa: F401

CXX = torch._inductor.config.cpp.cxx[1]


@pytest.fixture
def fresh_compile():
    compiled.reset()
    yield
    compiled.reset()


@pytest.fixture(scope="module")
def same_length(prompts):  # noqa: F811
    """Three distinct prompts of one length: every step is the same-slot (compiled) step."""
    n = min(len(p) for p in prompts)
    return [p[:n] for p in prompts]


@pytest.mark.slow  # (~15 s with a cold inductor cache, ~5 s warm)
@pytest.mark.skipif(shutil.which(CXX) is None, reason=f"inductor needs a C++ compiler ({CXX})")
def test_compiled_greedy_equals_no_cache_reference(tok, same_length, fresh_compile):  # noqa: F811
    model = _model(tok, kv_heads=2)  # grouped-query attention: 4 heads over 2 KV heads
    res = generate(model, tok, same_length, GREEDY, max_new_tokens=24, compile=True)
    assert compiled.failure is None
    assert compiled.steps >= 20  # (slot 0 and rows at different slots run eagerly)
    for p, got in zip(same_length, res.tokens):
        assert got == reference_greedy(model, p, len(got))


def test_failed_compile_warns_and_decodes_eagerly(tok, same_length, fresh_compile,  # noqa: F811
                                                  monkeypatch, tmp_path):
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", (None, str(tmp_path / "no-g++")))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))  # (no cached graph)
    model = _model(tok, kv_heads=4)
    eager = generate(model, tok, same_length, GREEDY, max_new_tokens=8)
    with pytest.warns(RuntimeWarning, match="torch.compile of the decode step failed"):
        res = generate(model, tok, same_length, GREEDY, max_new_tokens=8, compile=True)
    assert compiled.failure is not None and compiled.steps == 0
    assert res.tokens == eager.tokens
