"""Token ids from any JPEG-LM model -> a JPEG file or a picture.

    >>> jpeg = jpeglm.tokens_to_jpeg(ids)          # bytes of a standalone .jpg
    >>> image = jpeglm.tokens_to_image(ids)        # PIL image, damaged MCUs mid-grey

``model``: the model directory the ids came from (its tokenizer and profile), ``None``
for the bundled model, or a loaded model. ``ids`` may include ``<s>``/``</s>``.

The evaluation protocols (``jpeglm eval complete|uncond``) as calls that return the
results dict: ``evaluate_completion`` / ``evaluate_unconditional`` with a
``CompleteConfig`` / ``UncondConfig`` (see :mod:`jpeglm.evaluation`).
"""

from __future__ import annotations

from collections.abc import Iterable

from .evaluation import (
    CompleteConfig,
    UncondConfig,
    evaluate_completion,
    evaluate_unconditional,
    write_completion_report,
    write_uncond_report,
)

__all__ = ["CompleteConfig", "UncondConfig", "evaluate_completion", "evaluate_unconditional",
           "tokens_to_image", "tokens_to_jpeg", "write_completion_report", "write_uncond_report"]


def tokens_to_jpeg(ids: Iterable[int], model=None) -> bytes:
    """Token ids -> a standalone JPEG (the profile's tables attached), as sampled."""
    from codeclm.token_bytes import model_parts

    from . import codec

    tokenizer, profile = model_parts(model, "jpeg")
    return codec.to_jpeg(tokenizer.decode(_ints(ids)), profile)


def tokens_to_image(ids: Iterable[int], model=None):
    """Token ids -> an RGB ``PIL.Image`` of the profile's size (tolerant decode: the
    intact leading MCUs, mid-grey after the first damaged one)."""
    from codeclm.token_bytes import model_parts

    from . import codec

    tokenizer, profile = model_parts(model, "jpeg")
    return codec.decode_tolerant(tokenizer.decode(_ints(ids)), profile)[0]


def _ints(ids) -> list[int]:
    return [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
