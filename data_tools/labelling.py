"""Class labels for a shard set (``images|videos --labels folder|FILE.csv``).

Each written sample becomes ``<s> <class:NAME> tokens... </s>``; with probability
``--drop-label P`` (a fixed hash of the unit's name, so every run and any number of
workers pick the same samples) ``<class:null>`` instead. The per-unit token cache holds
unlabelled tokens (labels change nothing that was encoded); the class token goes in
when the shards are written. The shard set's ``tokenizer.json`` is the given tokenizer
plus the class tokens (:func:`codeclm.labels.add_class_tokens`), and ``labels.json``
lists the classes. Files with no label (directly in SRC with ``folder``, or not in the
CSV) are skipped with that reason.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from codeclm.errors import InputError
from codeclm.labels import (
    NULL_CLASS,
    add_class_tokens,
    check_drop,
    check_name,
    class_ids,
    drop_label,
    labels_for,
)

from .units import Unit


@dataclasses.dataclass
class Labelling:
    tokenizer: object               #: the data tokenizer with the class tokens added
    of_rel: dict[str, str]          #: file (relative, POSIX) -> class
    drop: float                     #: fraction of samples given the null class
    ids: dict[str, int] = dataclasses.field(default_factory=dict)  #: class -> token id
    counts: dict[str, int] = dataclasses.field(default_factory=dict)  #: samples per class

    def __post_init__(self):
        self.ids = class_ids(self.tokenizer)

    def apply(self, unit: Unit, tokens: np.ndarray) -> np.ndarray:
        """``[<s>, ..., </s>]`` -> ``[<s>, class, ..., </s>]`` for ``unit``."""
        name = self.of_rel[unit.rel]
        if drop_label(unit.cache_name(), self.drop):
            name = NULL_CLASS
        self.counts[name] = self.counts.get(name, 0) + 1
        head = np.asarray([self.ids[name]], dtype=tokens.dtype)
        return np.concatenate([tokens[:1], head, tokens[1:]])


def plan_labels(source: str | None, drop: float, src: Path, rels: list[str],
                tokenizer) -> tuple[Labelling | None, dict[Unit, str]]:
    """``(Labelling or None, skipped)``: the labels of ``rels`` from ``source``
    (``folder`` or a CSV path; None: no labels) and the files left without one."""
    if source is None:
        return None, {}
    check_drop(drop)
    where = "" if source == "folder" else f"{source}: "
    found = labels_for(rels, source, src)
    of_rel = {r: check_name(c, f"{where}{r}: ") for r, c in found.items() if c is not None}
    reason = ("no class folder (--labels folder takes the first folder under SRC)"
              if source == "folder" else f"no label in {source}")
    skipped = {Unit(r): reason for r, c in found.items() if c is None}
    if not of_rel:  # fail before OUT is touched
        raise InputError(f"{src}: none of the {len(found)} files has a label ({reason})")
    return Labelling(add_class_tokens(tokenizer, set(of_rel.values())), of_rel, drop), skipped
