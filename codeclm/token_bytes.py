"""Token ids -> codec bytes, for any tokenizer a user may hold.

A model directory's ``tokenizer.json`` spells each byte ``b`` as the character
``chr(0x2800 + b)`` (see :mod:`codeclm.tokenizer`), so ``transformers``'
``tokenizer.decode(ids)`` returns Braille text, not bytes. :func:`ids_to_bytes` undoes
that for a :class:`~codeclm.tokenizer.ByteTokenizer`, a ``transformers`` tokenizer, or a
model directory. :class:`TokenPrefixes` lists the tokens that begin a token (where a
grammar cuts the model's token to the part that still fits).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .model_dir import LoadedModel, resolve_model_dir
from .profile import load_profile
from .tokenizer import ByteTokenizer, text_to_bytes


def model_parts(model, modality: str):
    """``(ByteTokenizer, profile)`` of a model directory (path), ``None`` (the bundled
    model of ``modality``) or a loaded model; the weights are not read."""
    if isinstance(model, LoadedModel):
        return model.tokenizer, model.profile
    path = resolve_model_dir(model, modality)
    return ByteTokenizer.load(Path(path) / "tokenizer.json"), load_profile(path)


def ids_to_bytes(ids: Iterable[int], tokenizer: ByteTokenizer | str | os.PathLike | None = None,
                 modality: str = "jpeg") -> bytes:
    """Token ids (a list, or a 1-D tensor) -> the bytes they spell; special tokens dropped.

    ``tokenizer``: a ByteTokenizer, a ``transformers`` tokenizer (anything with
    ``convert_ids_to_tokens``), or a model directory / None (the bundled
    model of ``modality``).
    """
    ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    if isinstance(tokenizer, ByteTokenizer):
        return tokenizer.decode(ids)
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        return model_parts(tokenizer, modality)[0].decode(ids)
    # transformers' decode() joins tokens with spaces; the tokens themselves are exact
    return text_to_bytes("".join(tokenizer.convert_ids_to_tokens(ids, skip_special_tokens=True)))


class TokenPrefixes:
    """``prefixes(token_id)``: the tokens of ``vocab`` (token id -> bytes, None for
    special tokens) whose bytes are a proper prefix of ``token_id``'s, longest first.
    Built lazily and memoized per token."""

    def __init__(self, vocab: Sequence[bytes | None]):
        self._vocab = vocab
        self._ids: dict[bytes, int] | None = None
        self._memo: dict[int, list[int]] = {}

    def __call__(self, token_id: int) -> list[int]:
        got = self._memo.get(token_id)
        if got is None:
            if self._ids is None:
                self._ids = {b: t for t, b in enumerate(self._vocab) if b}
            b = self._vocab[token_id] or b""
            got = [t for t in (self._ids.get(b[:n]) for n in range(len(b) - 1, 0, -1))
                   if t is not None]
            self._memo[token_id] = got
        return got
