"""JPEG-LM: images as canonical JPEG bytes for a Llama language model."""

from .api import tokens_to_image, tokens_to_jpeg

__all__ = ["tokens_to_image", "tokens_to_jpeg"]
