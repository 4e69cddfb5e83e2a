"""Named Llama presets: from a CPU toy to the paper's Llama-2 7B architecture.

``llama_config(preset, vocab_size, context)`` returns a ``transformers.LlamaConfig``;
the vocabulary comes from the tokenizer and the context from the recipe, so one
preset serves both modalities (JPEG-LM: 12,288 tokens; AVC-LM: 32,768).
"""

from __future__ import annotations

import dataclasses

from .errors import ConfigError


@dataclasses.dataclass(frozen=True)
class LlamaPreset:
    """Architecture numbers only; vocabulary and context are set per run."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0


PRESETS: dict[str, LlamaPreset] = {
    # CPU: seconds per step on a laptop core
    "tiny": LlamaPreset(64, 2, 4, 4, 176),
    "mini": LlamaPreset(128, 4, 4, 4, 344),  # the bundled demo models
    "small": LlamaPreset(256, 6, 8, 8, 688),
    # GPU
    "1b": LlamaPreset(2048, 22, 32, 4, 5632),  # TinyLlama-1.1B shape
    "llama2-7b": LlamaPreset(4096, 32, 32, 32, 11008),  # the paper's architecture
}


def llama_config(preset: str, vocab_size: int, context: int, **overrides):
    """A ``LlamaConfig`` for ``preset`` with the given vocabulary and context (tokens)."""
    from transformers import LlamaConfig

    if preset not in PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}; known: {', '.join(PRESETS)}")
    if context < 16:
        raise ConfigError(f"context of {context} tokens is too short")
    p = dataclasses.asdict(PRESETS[preset])
    p.update(overrides)
    return LlamaConfig(vocab_size=vocab_size, max_position_embeddings=context,
                       tie_word_embeddings=False, **p)


def n_params(preset: str, vocab_size: int) -> int:
    """Parameter count of a preset (embeddings and head included)."""
    p = PRESETS[preset]
    h, L, f = p.hidden_size, p.num_hidden_layers, p.intermediate_size
    kv = h // p.num_attention_heads * p.num_key_value_heads
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * f + 2 * h
    return L * per_layer + 2 * vocab_size * h + h
