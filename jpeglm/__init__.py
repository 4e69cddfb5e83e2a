"""JPEG-LM: images as canonical JPEG bytes for a Llama language model."""

from .api import (
    CompleteConfig,
    UncondConfig,
    evaluate_completion,
    evaluate_unconditional,
    tokens_to_image,
    tokens_to_jpeg,
)

__all__ = ["CompleteConfig", "UncondConfig", "evaluate_completion", "evaluate_unconditional",
           "tokens_to_image", "tokens_to_jpeg"]
