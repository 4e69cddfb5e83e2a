"""Class labels: the label vocabulary of a class-conditional shard set or model.

A labelled sample is ``<s> <class:NAME> bytes... </s>``: one class token right after
``<s>``. Class tokens are *special* tokens added to the byte-level BPE tokenizer
(``tokenizers``' added tokens, ids after the merges): they spell no codec bytes
(``token_bytes`` is None for them), BPE never produces them from bytes, and the sampler
never draws them (:class:`codeclm.generation.session.Session` bans every special id but ``</s>``),
so no grammar mask can let one through after the start.

``<class:null>`` is the null class: training writes it instead of the real class with
probability ``--drop-label P`` (classifier-free guidance needs an unconditional model
too), and guided sampling (:mod:`codeclm.guidance`) runs it beside each conditional row.

The vocabulary is the set of class tokens in the tokenizer, so every checkpoint and
exported model carries it; ``labels.json`` (``{"classes": [...], "null": "<class:null>"}``)
is written beside the shards and in an exported model directory for people and tools.

Where labels come from (``data_tools images|videos --labels``): ``folder`` takes the
first folder under SRC (the ImageFolder convention, ``SRC/<class>/...``); a CSV file
with a header ``path,label`` names each file relative to SRC.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from .errors import ConfigError, InputError, ModelError

CLASS_PREFIX = "<class:"
NULL_CLASS = "null"
LABELS_FILE = "labels.json"
#: a class name: what fits inside ``<class:...>`` and a shell argument without quoting
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


class LabelError(ConfigError):
    """An unknown class, a bad class name, or a labels source that cannot be read."""


def class_token(name: str) -> str:
    """``cat`` -> ``<class:cat>``."""
    return f"{CLASS_PREFIX}{name}>"


def check_name(name: str, where: str = "") -> str:
    """``name`` if it can be a class (letters, digits, ``_.+-``; not ``null``)."""
    if not _NAME.match(name):
        raise LabelError(f"{where}class name {name!r} is not allowed (letters, digits and "
                         "_.+- only, at most 64 characters)")
    if name == NULL_CLASS:
        raise LabelError(f"{where}class name {NULL_CLASS!r} is reserved for the null class")
    return name


# --- the vocabulary in a tokenizer ------------------------------------------------------
def class_ids(tokenizer) -> dict[str, int]:
    """Class name -> token id for every class token of ``tokenizer`` (``null`` included;
    empty for an unconditional tokenizer, and for a SentencePiece vocabulary such as the
    published JPEG-LM checkpoint's, which has no class tokens)."""
    return {t[len(CLASS_PREFIX):-1]: i for t, i in tokenizer.special_tokens().items()
            if t.startswith(CLASS_PREFIX) and t.endswith(">")}


def class_names(tokenizer) -> list[str]:
    """The classes of ``tokenizer`` (sorted, without ``null``)."""
    return sorted(n for n in class_ids(tokenizer) if n != NULL_CLASS)


def add_class_tokens(tokenizer, names: Iterable[str]):
    """A copy of ``tokenizer`` (a ByteTokenizer) with ``<class:null>`` and ``<class:NAME>``
    for each name (sorted) added as special tokens; names it has already keep their ids."""
    from tokenizers import AddedToken, Tokenizer

    from .tokenizer import ByteTokenizer

    names = sorted({check_name(n) for n in names})
    backend = Tokenizer.from_str(tokenizer.backend.to_str())
    have = class_ids(tokenizer)
    new = [class_token(n) for n in [NULL_CLASS, *names] if n not in have]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in new])
    return ByteTokenizer(backend, tokenizer.modality)


def class_id(tokenizer, name: str) -> int:
    """The token id of class ``name``; :class:`LabelError` listing the known classes if
    the model has none or not this one, :class:`ModelError` if it is unconditional."""
    ids = class_ids(tokenizer)
    if not ids:
        raise ModelError(f"--class {name}: this model was trained without class labels "
                         "(an unconditional model)")
    if name not in ids or name == NULL_CLASS:
        raise LabelError(f"unknown class {name!r}; known classes: "
                         f"{', '.join(class_names(tokenizer))}")
    return ids[name]


def null_id(tokenizer) -> int:
    """The id of ``<class:null>`` (:class:`ModelError` for an unconditional tokenizer)."""
    ids = class_ids(tokenizer)
    if NULL_CLASS not in ids:
        raise ModelError("this model was trained without class labels (no <class:null> token)")
    return ids[NULL_CLASS]


def with_class(ids: list[int], class_token_id: int | None) -> list[int]:
    """A prompt ``[<s>, ...]`` with the class token inserted after ``<s>`` (None: as is)."""
    return ids if class_token_id is None else ids[:1] + [class_token_id] + ids[1:]


# --- labels.json ---------------------------------------------------------------------------
def save_labels(tokenizer, directory: str | os.PathLike) -> Path | None:
    """Write ``DIR/labels.json`` for a tokenizer with class tokens (atomic); None if it has none."""
    from .io import atomic_write

    if not class_ids(tokenizer):
        return None
    path = Path(directory) / LABELS_FILE
    with atomic_write(path, "w") as f:
        json.dump({"classes": class_names(tokenizer), "null": class_token(NULL_CLASS)}, f,
                  indent=2)
        f.write("\n")
    return path


# --- where labels come from ------------------------------------------------------------------
def folder_label(rel: str) -> str | None:
    """The class of a file at ``rel`` (relative to SRC, posix): its first folder, or None
    for a file directly in SRC."""
    parts = rel.split("/")
    return parts[0] if len(parts) > 1 else None


def read_label_csv(path: str | os.PathLike, src: str | os.PathLike) -> dict[str, str]:
    """``path,label`` rows (a header line first) -> ``{relpath: label}``; paths are relative
    to ``src`` and must exist. :class:`InputError` for an unreadable or malformed file."""
    path, src = Path(path), Path(src)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the labels file ({e})") from e
    if not rows or [c.strip() for c in rows[0][:2]] != ["path", "label"]:
        raise InputError(f"{path}: a labels CSV starts with the header line 'path,label'")
    out: dict[str, str] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise InputError(f"{path}: line {n}: expected 'path,label', got {','.join(row)!r}")
        rel, label = Path(row[0].strip()).as_posix(), row[1].strip()
        check_name(label, f"{path}: line {n}: ")
        if not (src / rel).is_file():
            raise InputError(f"{path}: line {n}: {rel}: no such file under {src}")
        out[rel] = label
    if not out:
        raise InputError(f"{path}: no labelled files")
    return out


def drop_label(key: str, p: float) -> bool:
    """Whether the sample named ``key`` gets the null class: a fixed hash of the key, so
    every run and any number of workers drop the same samples (about a fraction ``p``)."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return h / 2**64 < p


def label_sequence(tokens, class_token_id: int):
    """Token array ``[<s>, bytes..., </s>]`` -> ``[<s>, class, bytes..., </s>]`` (numpy)."""
    import numpy as np

    return np.concatenate([tokens[:1], np.asarray([class_token_id], tokens.dtype), tokens[1:]])


def check_drop(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise LabelError(f"--drop-label must be in [0, 1), got {p}")
    return p


def labels_for(rels: Iterable[str], source: str,
               src: str | os.PathLike) -> Mapping[str, str | None]:
    """``{rel: class or None}`` for the files ``rels`` from ``source`` (``folder`` or a CSV)."""
    if source == "folder":
        return {r: folder_label(r) for r in rels}
    table = read_label_csv(source, src)
    return {r: table.get(r) for r in rels}


# --- warm start of a class-conditional model from an unconditional one ------------------------
GROWN_ROWS = ("model.embed_tokens.weight", "lm_head.weight")


def grow_vocab_rows(state: dict, own: dict) -> tuple[dict, int]:
    """Fit an unconditional model's weights ``state`` to a model ``own`` whose vocabulary
    has the class tokens added at its end: ``(state, rows added)``.

    The embedding and output-head rows of the new tokens start as the **mean of the
    existing rows** (a class token begins as an "average token", so the first steps do
    not see an outlier input or skewed logits); every other tensor and row is kept.
    Tensors that differ in anything but extra rows are left alone (the caller's shape
    check reports them)."""
    import torch

    added = 0
    state = dict(state)
    for key in GROWN_ROWS:
        old, new = state.get(key), own.get(key)
        if old is None or new is None or old.shape[1:] != new.shape[1:]:
            continue
        extra = new.shape[0] - old.shape[0]
        if extra <= 0:
            continue
        mean = old.mean(0, keepdim=True).to(old.dtype)
        state[key] = torch.cat([old, mean.expand(extra, -1)])
        added = extra
    return state, added
