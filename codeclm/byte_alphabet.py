"""The byte alphabet of the byte-level BPE: each byte ``b`` is the character
``chr(BYTE_OFFSET + b)`` (the Braille block, as in the JPEG-LM public inference code), so
BPE sees a 256-character alphabet and every byte string has exactly one spelling; and the
pre-tokenizer's unit split of each modality in that alphabet (:func:`unit_split`).
:mod:`codeclm.tokenizer` and :mod:`codeclm.fast_bpe` both build on it.
"""

from __future__ import annotations

from .errors import TokenizerError
from .modality import find as find_modality
from .modality import names as modality_names

BYTE_OFFSET = 0x2800
_TO_CHARS = {b: chr(BYTE_OFFSET + b) for b in range(256)}
_ENC_TABLE = str.maketrans({chr(b): chr(BYTE_OFFSET + b) for b in range(256)})


def byte_char(b: int) -> str:
    """The BPE alphabet's character for byte ``b`` (0..255)."""
    return _TO_CHARS[b]


def unit_split(modality: str) -> tuple[str, str]:
    """The pre-tokenizer's unit split of a modality: (regex over the BPE alphabet, Split
    behaviour), from its record's unit marker (:mod:`codeclm.modality`). JPEG: a restart
    marker closes an MCU and stays with it ("merged_with_previous"); H.264: a start code
    opens a NAL unit and stays with it ("merged_with_next")."""
    rec = find_modality(modality)
    if rec is None:
        raise TokenizerError(f"unknown modality {modality!r}; expected one of "
                             f"{sorted(modality_names())}")
    return rec.split_pattern(byte_char)


def bytes_to_text(data: bytes) -> str:
    """Bytes -> the BPE alphabet (one character per byte)."""
    return data.decode("latin-1").translate(_ENC_TABLE)


def text_to_bytes(text: str) -> bytes:
    """The inverse of :func:`bytes_to_text` (characters outside the alphabet are an error)."""
    try:
        return bytes(ord(ch) - BYTE_OFFSET for ch in text)
    except ValueError as e:
        raise TokenizerError(f"text contains characters outside the byte alphabet: {e}") from e
