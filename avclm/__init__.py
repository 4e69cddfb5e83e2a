"""AVC-LM: videos as canonical H.264 (Annex-B) bytes for a Llama language model."""

from .api import ContinueConfig, evaluate_continuation, tokens_to_annexb, tokens_to_frames

__all__ = ["ContinueConfig", "evaluate_continuation", "tokens_to_annexb", "tokens_to_frames"]
