"""Token ids from any AVC-LM model -> an H.264 stream or frames.

    >>> stream = avclm.tokens_to_annexb(ids)       # raw Annex-B bytes (save as .h264)
    >>> frames = avclm.tokens_to_frames(ids)       # list of (H, W, 3) uint8 RGB arrays

``model``: the model directory the ids came from, ``None`` for the bundled model, or a
loaded model. ``ids`` may include ``<s>``/``</s>``. ``avclm.codec.annexb_to_mp4`` wraps a
stream in an MP4 without re-encoding.

The evaluation protocol (``avclm eval continue``) as a call that returns the results
dict: ``evaluate_continuation`` with a ``ContinueConfig`` (see :mod:`avclm.evaluation`).
"""

from __future__ import annotations

from collections.abc import Iterable

from .evaluation import ContinueConfig, evaluate_continuation, write_continuation_report

__all__ = ["ContinueConfig", "evaluate_continuation", "tokens_to_annexb", "tokens_to_frames",
           "write_continuation_report"]


def tokens_to_annexb(ids: Iterable[int], model=None) -> bytes:
    """Token ids -> the Annex-B H.264 bytes they spell (start codes included)."""
    from codeclm.token_bytes import model_parts

    tokenizer, _ = model_parts(model, "h264")
    return tokenizer.decode([int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)])


def tokens_to_frames(ids: Iterable[int], model=None) -> list:
    """Token ids -> decoded frames, (H, W, 3) uint8 RGB each (damaged slices concealed)."""
    from codeclm.token_bytes import model_parts

    from .stream import decode_annexb

    tokenizer, profile = model_parts(model, "h264")
    data = tokenizer.decode([int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)])
    return decode_annexb(data, profile, strict=False)
