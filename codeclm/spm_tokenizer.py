"""SentencePiece vocabularies over codec bytes: the published JPEG-LM checkpoint's tokenizer.

The authors' reimplementation (``uwnlp/jpeg-lm-reimplementation``) ships a SentencePiece
BPE model (``tokenizer.model``) over the same alphabet as :mod:`codeclm.tokenizer`: byte
``b`` is the character ``chr(0x2800 + b)``. Its reference script loads it with
``AutoTokenizer.from_pretrained(DIR, use_fast=False, add_eos_token=True)`` and encodes a
whole stream as ``<s>`` + SentencePiece pieces (+ ``</s>``).

:class:`SpmTokenizer` reads that file with the ``sentencepiece`` package and offers the
same interface as :class:`codeclm.tokenizer.ByteTokenizer` (``token_bytes``,
``byte_ids``, ``special_ids``, ``encode``, ``decode``), so the sampler, the JPEG grammar
and the evaluation run on it unchanged. Every piece's bytes come from the piece itself:

- a piece of braille characters: their bytes (``"⣿⣘"`` -> ``FF D8``);
- the dummy prefix ``▁`` (SentencePiece's word-start mark, which it puts before a whole
  text): it stands for no byte, so ``"▁⣿⣘"`` is ``FF D8`` and ``"▁"`` alone is ``b""``.
  Such pieces occur only at the start of a stream (always inside our prompts, which hold
  the header), so they are never sampled;
- byte-fallback pieces ``<0xNN>``: fragments of a character's UTF-8 encoding, not a data
  byte; control (``<s>``, ``</s>``), unknown (``<unk>``) and unused pieces, and any piece
  with characters outside the alphabet: no bytes (``None``), never sampled.

The grammar needs every byte as a single token, so a vocabulary missing a byte's
character is refused at load with the bytes named. Encoding a stream start (``bos=True``)
adds the dummy prefix exactly as SentencePiece does for a whole text; a continuation
(``bos=False``) is encoded without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import TokenizerError
from .tokenizer import BYTE_OFFSET, bytes_to_text

#: SentencePiece's whitespace / dummy-prefix mark (U+2581)
DUMMY_PREFIX = "\u2581"


def piece_bytes(piece: str) -> bytes | None:
    """The data bytes a non-special piece stands for: braille characters -> bytes, a
    leading dummy prefix dropped; None if any other character is in it."""
    body = piece[1:] if piece.startswith(DUMMY_PREFIX) else piece
    out = bytearray()
    for ch in body:
        b = ord(ch) - BYTE_OFFSET
        if not 0 <= b < 256:
            return None
        out.append(b)
    return bytes(out)


def _processor(proto: bytes, dummy_prefix: bool):
    """A SentencePieceProcessor for ``proto`` with the dummy prefix forced on or off."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    m.ParseFromString(proto)
    m.normalizer_spec.add_dummy_prefix = m.normalizer_spec.add_dummy_prefix and dummy_prefix
    return spm.SentencePieceProcessor(model_proto=m.SerializeToString())


class SpmTokenizer:
    """A SentencePiece BPE model over braille-mapped codec bytes (see the module docstring).

    ``vocab_size``: number of pieces; ``token_bytes[i]``: the bytes of piece ``i`` (None
    for pieces that stand for no data); ``special_ids``: ids never sampled (every piece
    with no bytes, and the dummy-prefix pieces) except that ``eos_id`` ends a sample.
    """

    fast = None  #: no codeclm.fast_bpe encoder (SentencePiece encodes)

    def __init__(self, proto: bytes, modality: str = "jpeg", source: str = "tokenizer.model"):
        try:
            self._start = _processor(proto, dummy_prefix=True)
            self._continue = _processor(proto, dummy_prefix=False)
        except Exception as e:  # protobuf DecodeError / RuntimeError from sentencepiece
            raise TokenizerError(f"{source}: not a SentencePiece model ({e})") from e
        sp = self._start
        self.modality = modality
        self.source = source
        self.reserved_ids: list[int] = []  #: no conditioning ids in this vocabulary
        self.vocab_size = sp.get_piece_size()
        self.bos_id, self.eos_id, self.unk_id = sp.bos_id(), sp.eos_id(), sp.unk_id()
        if self.bos_id < 0 or self.eos_id < 0:
            raise TokenizerError(f"{source}: SentencePiece model has no <s> / </s> pieces")
        #: fed to rows that have finished (any valid id; the model has no pad piece)
        self.pad_id = sp.pad_id() if sp.pad_id() >= 0 else self.unk_id
        self.pieces = [sp.id_to_piece(i) for i in range(self.vocab_size)]
        self.token_bytes: list[bytes | None] = []
        prefixed = set()
        for i, piece in enumerate(self.pieces):
            plain = not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i) or sp.is_byte(i))
            data = piece_bytes(piece) if plain else None
            self.token_bytes.append(data)
            if data is not None and piece.startswith(DUMMY_PREFIX):
                prefixed.add(i)
        self.prefix_ids = frozenset(prefixed)
        no_bytes = frozenset(i for i, b in enumerate(self.token_bytes) if b is None)
        self.special_ids = no_bytes | prefixed
        ids = {p: i for i, p in enumerate(self.pieces)}
        missing = [b for b in range(256) if chr(BYTE_OFFSET + b) not in ids]
        if missing:
            shown = " ".join(f"{b:02X}" for b in missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise TokenizerError(f"{source}: {len(missing)} byte values have no piece of their own "
                                 f"({shown}); the JPEG grammar needs all 256 as single tokens")
        self.byte_ids = [ids[chr(BYTE_OFFSET + b)] for b in range(256)]

    # --- files ---------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, modality: str = "jpeg") -> SpmTokenizer:
        """Load ``tokenizer.model`` (or the one inside a directory)."""
        p = Path(path)
        if p.is_dir():
            p = p / "tokenizer.model"
        if not p.is_file():
            raise TokenizerError(f"{p}: no SentencePiece tokenizer.model")
        return cls(p.read_bytes(), modality, str(p))

    @property
    def proto(self) -> bytes:
        """The SentencePiece model file's bytes (as loaded, dummy prefix included)."""
        return self._start.serialized_model_proto()

    def special_tokens(self) -> dict[str, int]:
        """Token -> id of the control pieces (``<s>``, ``</s>``), as
        :meth:`codeclm.tokenizer.ByteTokenizer.special_tokens`; a SentencePiece vocabulary
        has no class tokens."""
        return {"<s>": self.bos_id, "</s>": self.eos_id}

    def fingerprint(self) -> str:
        """This tokenizer's identity (64 hex digits), as
        :meth:`codeclm.tokenizer.ByteTokenizer.fingerprint`: SHA-256 of the modality and the
        SentencePiece model's bytes (never equal to a byte-level BPE tokenizer's)."""
        import hashlib

        return hashlib.sha256(b"sentencepiece\0" + self.modality.encode() + b"\0"
                              + self.proto).hexdigest()

    # --- encode / decode -------------------------------------------------------
    def encode(self, data: bytes, bos: bool = True, eos: bool = True) -> list[int]:
        """Modeled bytes -> piece ids. ``bos=True`` encodes a stream start: ``<s>`` and
        SentencePiece's dummy prefix, as the reference script's tokenizer does;
        ``bos=False`` a continuation (no prefix). ``</s>`` appended unless ``eos=False``."""
        sp = self._start if bos else self._continue
        ids = sp.encode(bytes_to_text(data))
        tb = self.token_bytes
        bad = next((i for i in ids if tb[i] is None), None)
        if bad is not None:
            raise TokenizerError(f"{self.source}: bytes encode to the piece {self.pieces[bad]!r}, "
                                 "which stands for no data byte")
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def encode_array(self, data: bytes, bos: bool = True, eos: bool = True):
        """:meth:`encode` as an ``int32`` numpy array ``(n_tokens,)``."""
        import numpy as np

        return np.asarray(self.encode(data, bos, eos), dtype=np.int32)

    def encode_batch(self, datas: Sequence[bytes], bos: bool = True,
                     eos: bool = True) -> list[list[int]]:
        return [self.encode(d, bos, eos) for d in datas]

    def decode(self, ids: Iterable[int]) -> bytes:
        """Piece ids -> bytes; pieces with no bytes (specials, byte fallback) are dropped."""
        from .tokenizer import decode_token_bytes

        return decode_token_bytes(self.token_bytes, ids)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"SpmTokenizer(modality={self.modality!r}, vocab_size={self.vocab_size})"
