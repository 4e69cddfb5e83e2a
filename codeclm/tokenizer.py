"""Byte-level BPE over codec bytes, built with Hugging Face ``tokenizers``.

Each byte ``b`` is the character ``chr(0x2800 + b)`` (the Braille block, as in the
JPEG-LM public inference code; :mod:`codeclm.byte_alphabet`), so BPE sees a 256-character
alphabet and every byte string has exactly one spelling. Merges are learned per modality and never
cross a unit boundary: a pre-tokenizer splits the stream at the modality's unit
marker (JPEG: after each restart marker ``FF D0``..``FF D7``; H.264: before each
start code ``00 00 01`` / ``00 00 00 01``), so a prompt cut at a unit and the
streaming writer always fall on a token boundary.

Token ids: the special tokens come first (``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, then
eight ``<reserved_i>`` ids for conditioning), then the 256 byte tokens, then the
merges. A modeled sample is ``[<s>] + tokens(bytes) + [</s>]``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .byte_alphabet import (  # noqa: F401  (re-exported: the alphabet is part of the tokenizer's API)
    BYTE_OFFSET,
    byte_char,
    bytes_to_text,
    text_to_bytes,
    unit_split,
)
from .errors import TokenizerError
from .fast_bpe import FastBPE
from .modality import names as modality_names

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
N_RESERVED = 8
SPECIAL_TOKENS = (PAD, BOS, EOS, *(f"<reserved_{i}>" for i in range(N_RESERVED)))
#: smallest useful vocabulary: specials + 256 bytes
MIN_VOCAB = len(SPECIAL_TOKENS) + 256

def _build_backend(modality: str):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    pattern, behavior = unit_split(modality)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior=behavior)
    return tok


class ByteTokenizer:
    """A trained byte-level BPE tokenizer for one modality.

    Wraps a ``tokenizers.Tokenizer``; the same file loads as
    ``transformers.PreTrainedTokenizerFast(tokenizer_file=...)``.
    """

    def __init__(self, backend, modality: str):
        self.backend = backend
        self.modality = modality
        self._fingerprint: str | None = None
        vocab = backend.get_vocab()
        self.vocab_size = len(vocab)
        ids = {t: vocab.get(t) for t in SPECIAL_TOKENS}
        if any(v is None for v in ids.values()):
            raise TokenizerError("tokenizer lacks the special tokens " + ", ".join(SPECIAL_TOKENS))
        self.pad_id, self.bos_id, self.eos_id = ids[PAD], ids[BOS], ids[EOS]
        self.reserved_ids = [ids[f"<reserved_{i}>"] for i in range(N_RESERVED)]
        # every special token the file holds (class tokens too: codeclm.labels) spells no bytes
        self.special_ids = frozenset(ids.values()) | {
            i for i, t in backend.get_added_tokens_decoder().items() if t.special}
        #: token id -> its bytes (None for special tokens)
        self.token_bytes: list[bytes | None] = [None] * self.vocab_size
        for token, i in vocab.items():
            if i not in self.special_ids:
                self.token_bytes[i] = text_to_bytes(token)
        missing = [b for b in range(256) if byte_char(b) not in vocab]
        if missing:
            raise TokenizerError(f"tokenizer lacks byte tokens for {len(missing)} byte values")
        self.byte_ids = [vocab[byte_char(b)] for b in range(256)]
        #: the fast exact encoder (codeclm.fast_bpe); None: this file needs Hugging Face's
        self.fast = FastBPE.from_backend(backend, self.byte_ids, modality)

    # --- training and files -------------------------------------------------
    @classmethod
    def train(cls, samples: Iterable[bytes], vocab_size: int, modality: str,
              show_progress: bool = False) -> ByteTokenizer:
        """Learn ``vocab_size - MIN_VOCAB`` merges from ``samples`` (modeled byte strings)."""
        from tokenizers import trainers

        if vocab_size < MIN_VOCAB:
            raise TokenizerError(f"vocab size {vocab_size} is below the minimum {MIN_VOCAB} "
                                 f"({len(SPECIAL_TOKENS)} special tokens + 256 bytes)")
        backend = _build_backend(modality)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=[byte_char(b) for b in range(256)],
            min_frequency=2,
            show_progress=show_progress,
        )
        backend.train_from_iterator((bytes_to_text(s) for s in samples), trainer=trainer)
        return cls(backend, modality)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ByteTokenizer:
        """Load ``tokenizer.json`` (or the one inside a directory)."""
        from tokenizers import Tokenizer

        p = Path(path)
        if p.is_dir():
            p = p / "tokenizer.json"
        if not p.is_file():
            raise TokenizerError(f"{p}: no tokenizer file")
        try:
            backend = Tokenizer.from_file(str(p))
        except Exception as e:  # tokenizers raises plain Exception subclasses
            raise TokenizerError(f"{p}: not a tokenizer file ({e})") from e
        return cls(backend, _modality_of(backend))

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` atomically (a directory gets ``DIR/tokenizer.json``)."""
        from .io import atomic_write

        p = Path(path)
        if p.is_dir() or not p.suffix:
            p = p / "tokenizer.json"
        with atomic_write(p, "w") as f:
            f.write(self.backend.to_str(pretty=True))
        return p

    def to_hf(self):
        """A ``transformers.PreTrainedTokenizerFast`` over the same vocabulary. Like a Llama
        tokenizer it puts ``<s>`` before a text (``add_special_tokens=False``: bare ids), so
        ``AutoTokenizer.from_pretrained(DIR)(text)`` is a prompt ready for ``generate``."""
        from tokenizers import Tokenizer, processors
        from transformers import PreTrainedTokenizerFast

        backend = Tokenizer.from_str(self.backend.to_str())
        backend.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A $B:1", special_tokens=[(BOS, self.bos_id)])
        return PreTrainedTokenizerFast(
            tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD,
            additional_special_tokens=list(SPECIAL_TOKENS[3:]),
        )

    # --- encode / decode -----------------------------------------------------
    def encode(self, data: bytes, bos: bool = True, eos: bool = True) -> list[int]:
        """Modeled bytes -> token ids (``<s>`` ... ``</s>`` unless disabled).

        Uses :class:`codeclm.fast_bpe.FastBPE` (same ids, several times faster) when the
        merges allow it, else Hugging Face's encoder."""
        if self.fast is not None:
            ids = self.fast.encode(data)
        else:
            ids = self.backend.encode(bytes_to_text(data), add_special_tokens=False).ids
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def encode_array(self, data: bytes, bos: bool = True, eos: bool = True):
        """:meth:`encode` as an ``int32`` numpy array ``(n_tokens,)``: what shard writers
        store, without a Python list in between."""
        import numpy as np

        if self.fast is None:
            return np.asarray(self.encode(data, bos, eos), dtype=np.int32)
        body = self.fast.encode_array(data)
        out = np.empty(len(body) + bos + eos, dtype=np.int32)
        out[bos:len(out) - eos] = body
        if bos:
            out[0] = self.bos_id
        if eos:
            out[-1] = self.eos_id
        return out

    def encode_batch(self, datas: Sequence[bytes], bos: bool = True,
                     eos: bool = True) -> list[list[int]]:
        """:meth:`encode` for many samples (Hugging Face's batch encoder uses its threads)."""
        if self.fast is not None:
            return [self.encode(d, bos, eos) for d in datas]
        encs = self.backend.encode_batch([bytes_to_text(d) for d in datas],
                                         add_special_tokens=False)
        head, tail = ([self.bos_id] if bos else []), ([self.eos_id] if eos else [])
        return [head + e.ids + tail for e in encs]

    def decode(self, ids: Iterable[int]) -> bytes:
        """Token ids -> bytes; special tokens are dropped."""
        return decode_token_bytes(self.token_bytes, ids)

    def special_tokens(self) -> dict[str, int]:
        """Token -> id of every special token (``<s>``, ``</s>``, the class tokens of
        :mod:`codeclm.labels`): the ones that stand for no bytes."""
        return {t.content: i for i, t in self.backend.get_added_tokens_decoder().items()
                if t.special}

    def fingerprint(self) -> str:
        """This tokenizer's identity (64 hex digits): SHA-256 of its modality and of the parts
        of its file that decide the ids (BPE model with vocabulary and merges, normalizer,
        pre-tokenizer). Equal fingerprints give equal ids for every byte string. Not a file
        checksum: pretty-printing and export's post-processor leave it unchanged."""
        if self._fingerprint is None:
            spec = json.loads(self.backend.to_str())
            ident = {"modality": self.modality, "model": spec.get("model"),
                     "normalizer": spec.get("normalizer"),
                     "pre_tokenizer": spec.get("pre_tokenizer")}
            text = json.dumps(ident, sort_keys=True, ensure_ascii=False)
            self._fingerprint = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return self._fingerprint

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"ByteTokenizer(modality={self.modality!r}, vocab_size={self.vocab_size})"


def _modality_of(backend) -> str:
    """Recover the modality from the saved pre-tokenizer's split pattern."""
    spec = json.loads(backend.to_str()).get("pre_tokenizer") or {}
    pattern = (spec.get("pattern") or {}).get("Regex")
    for name in modality_names():
        if pattern == unit_split(name)[0]:
            return name
    raise TokenizerError("tokenizer file was not made by codeclm (unknown unit split)")


def decode_token_bytes(token_bytes: Sequence[bytes | None], ids: Iterable[int]) -> bytes:
    """The bytes of token ``ids`` under a ``token_bytes`` table (None: a token with no
    bytes, dropped); :class:`TokenizerError` for an id outside the table."""
    n = len(token_bytes)
    out = []
    for i in ids:
        if not 0 <= i < n:
            raise TokenizerError(f"token id {i} out of range for a vocabulary of {n}")
        out.append(token_bytes[i] or b"")
    return b"".join(out)
